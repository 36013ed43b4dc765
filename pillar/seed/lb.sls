# The seed's load-balancer pair, at the seed's own 10.x addresses.
#
# This pillar is rendered and validated (`salt-call lb.validate`,
# `salt-call lb.preview node=lb-a os_family=FreeBSD`), never used for
# traffic.  The lab runs the same pair at 198.18.x: see pillar/lab/lb.sls.
# Every key is described in docs/pillar.md.
#
# Where the seed is wrong, this pillar says what it does instead (see
# docs/seed-differences.md).  The secrets below are the seed's example
# values; a real pillar keeps them encrypted (Salt's GPG renderer).
lb:
  pairs:
    edge:
      description: CARP + HAProxy pair in front of MySQL/Galera and HTTP (the seed)
      networks:
        mgmt:
          cidr: 10.1.1.0/24
          gateway: 10.1.1.254
        user:
          cidr: 10.2.2.0/24
          gateway: 10.2.2.254
        systems:
          cidr: 10.3.3.0/24
          gateway: 10.3.3.254
        mysql:
          cidr: 10.4.4.0/23
        http:
          cidr: 10.6.6.0/24

      nodes:
        lb-a:
          hostname: carp_host-0.example.com
          router_id: 10.255.255.241
          interfaces:
            mgmt: {network: mgmt, address: 10.1.1.241, device: hn0}
            vip: {network: user, address: 10.2.2.241, device: hn1}
            systems: {network: systems, address: 10.3.3.241, device: hn2}
        lb-b:
          hostname: carp_host-0_b.example.com
          router_id: 10.255.255.242
          interfaces:
            mgmt: {network: mgmt, address: 10.1.1.242, device: hn0}
            vip: {network: user, address: 10.2.2.242, device: hn1}
            systems: {network: systems, address: 10.3.3.242, device: hn2}

      carp:
        advbase: 1
        backup_advskew: 100
        preempt: true
        linux_provider: keepalived
        groups:
          4: {interface: vip, vip: 10.2.2.4/24, password: passwd4, primary: lb-a}
          44: {interface: vip, vip: 10.2.2.44/24, password: passwd44, primary: lb-a}
          5: {interface: vip, vip: 10.2.2.5/24, password: passwd4, primary: lb-a}
          55: {interface: vip, vip: 10.2.2.55/24, password: passwd44, primary: lb-a}

      sysctl:
        ip_forwarding: true

      # One list for both nodes.  The seed's two copies disagree (mysqlnet via
      # 10.2.2.254 on the primary, via 10.3.3.254 on the secondary; httpnet a
      # /23 on one, a /24 on the other): the database and HTTP segments sit
      # behind the systems-facing router, and the HTTP segment is a /24.
      routes:
        mgmtnet: {destination: 10.1.0.0/23, gateway: 10.1.1.254}
        usernet: {destination: 10.0.0.0/16, gateway: 10.2.2.254}
        mysqlnet: {destination: 10.4.4.0/23, gateway: 10.3.3.254}
        httpnet: {destination: 10.6.6.0/24, gateway: 10.3.3.254}

      haproxy:
        userlists:
          stats-auth:
            users:
              admin:
                password_hash: $6$seedsalt0123456$lOmziMjs2I/kV14Ifs7gnkRYmZriUgEDGFnplLWVWZsy1sfQ8G.G1TPuWajs3G4NG1Cr2CJLpNtkeKG2704jd1
              lbuser:
                password_hash: $6$seedsalt6543210$Bpz.Zg3ybFFiU7WUnqbUWENfuEAV6JHGyXYDq3jQJFcAXppWuKK9wzFvU9aHu99zgtfyEOUGYdSe2q7yS5yFq1
            groups:
              admin: [admin]
              readonly: [lbuser]

        stats:
          interface: mgmt
          port: 9000
          uri: /haproxy_stats
          userlist: stats-auth
          admin_group: admin
          refresh: 10s
          show_node: true
          timeouts: {client: 5000, connect: 4000, server: 30000}

        pools:
          galera_a:
            kind: galera
            check: {type: tcp-check, port: 9200, expect: 'string is\ running.'}
            default_server: {inter: 2s, downinter: 5s, rise: 3, fall: 2, slowstart: 60s, maxconn: 300, maxqueue: 128, weight: 100}
            servers:
              percona_mysql-1: {address: 10.4.4.2, port: 3306}
              percona_mysql-2: {address: 10.4.4.3, port: 3306, backup: true}
              percona_mysql-3: {address: 10.4.4.4, port: 3306, backup: true}
          galera_b:
            kind: galera
            check: {type: tcp-check, port: 9200, expect: 'string is\ running.'}
            default_server: {inter: 2s, downinter: 5s, rise: 3, fall: 2, slowstart: 60s, maxconn: 300, maxqueue: 128, weight: 100}
            servers:
              percona_mysql-4: {address: 10.4.5.2, port: 3306, backup: true}
              percona_mysql-5: {address: 10.4.5.3, port: 3306, backup: true}
              percona_mysql-6: {address: 10.4.5.4, port: 3306}
          web_a:
            kind: http
            servers:
              http_srv-1: {address: 10.6.6.1, port: 80}
              http_srv-2: {address: 10.6.6.2, port: 80}
          web_b:
            kind: http
            servers:
              http_srv-3: {address: 10.6.6.3, port: 80}
              http_srv-4: {address: 10.6.6.4, port: 80}

        listeners:
          mysql_4:
            vhid: 4
            port: 3306
            mode: tcp
            balance: leastconn
            options: [socket-stats]
            timeouts: {client: 10800s, server: 10800s}
            pool: galera_a
          mysql_44:
            vhid: 44
            port: 3306
            mode: tcp
            balance: leastconn
            options: [socket-stats]
            timeouts: {client: 10800s, server: 10800s}
            pool: galera_b
          http_5:
            vhid: 5
            port: 80
            mode: http
            balance: source
            pool: web_a
          http_55:
            vhid: 55
            port: 80
            mode: http
            balance: source
            pool: web_b

      galera_probe:
        port: 9200
        user: clustercheck
        password: clustercheck-seed-pw
        available_when_donor: false
        available_when_readonly: false
        timeout: 2

      routing:
        ospf:
          area: 0.0.0.0
          interfaces:
            vip: {}
            mgmt: {passive: true}
            systems: {metric: 10}
        bgp:
          asn: 65000
          neighbors:
            ebgp1:
              address: 10.2.2.1
              remote_as: 65001
              md5sig_password: secret
              med: 10
              localpref: 80
              communities: ['65000:180']
