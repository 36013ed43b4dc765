{#- A node became MASTER of a CARP group: make sure HAProxy runs on it with
    the current config (the haproxy SLS, on that node only).  queue: a state
    run already in progress there is waited for, not failed. #}
lb_haproxy_on_new_master:
  local.state.apply:
    - tgt: {{ data['id'] }}
    - args:
      - mods: haproxy
      - queue: True
