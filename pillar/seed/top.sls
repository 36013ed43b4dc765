# salt-call from the repo root (masterless) sees the seed's pair.
base:
  '*':
    - lb
