# The seed's pair in the lab: the same topology at 198.18.x (RFC 2544's
# benchmarking range), seed 10.N.x.y -> 198.18.x.y.  The lab builds its Mininet
# network from this file (networks, nodes, gateways, database and HTTP
# servers), and the lab's salt-master serves it.  Linux device names are the
# lab's veth names.  Every key is described in docs/pillar.md.
lb:
  pairs:
    edge:
      description: CARP + HAProxy pair in front of MySQL/Galera and HTTP (the seed)
      networks:
        mgmt:
          cidr: 198.18.1.0/24
          gateway: 198.18.1.254
        user:
          cidr: 198.18.2.0/24
          gateway: 198.18.2.254
        systems:
          cidr: 198.18.3.0/24
          gateway: 198.18.3.254
        mysql:
          cidr: 198.18.4.0/23
        http:
          cidr: 198.18.6.0/24

      nodes:
        lb-a:
          hostname: carp_host-0.example.com
          router_id: 198.19.255.241
          interfaces:
            mgmt: {network: mgmt, address: 198.18.1.241, device: lb-a-eth0}
            vip: {network: user, address: 198.18.2.241, device: lb-a-eth1}
            systems: {network: systems, address: 198.18.3.241, device: lb-a-eth2}
        lb-b:
          hostname: carp_host-0_b.example.com
          router_id: 198.19.255.242
          interfaces:
            mgmt: {network: mgmt, address: 198.18.1.242, device: lb-b-eth0}
            vip: {network: user, address: 198.18.2.242, device: lb-b-eth1}
            systems: {network: systems, address: 198.18.3.242, device: lb-b-eth2}

      carp:
        advbase: 1
        backup_advskew: 100
        preempt: true
        linux_provider: keepalived
        groups:
          4: {interface: vip, vip: 198.18.2.4/24, password: passwd4, primary: lb-a}
          44: {interface: vip, vip: 198.18.2.44/24, password: passwd44, primary: lb-a}
          5: {interface: vip, vip: 198.18.2.5/24, password: passwd4, primary: lb-a}
          55: {interface: vip, vip: 198.18.2.55/24, password: passwd44, primary: lb-a}

      sysctl:
        ip_forwarding: true

      # The seed's routes, moved into the lab's range.  The management route
      # points at an operators' network behind the mgmt router, the user
      # route at the clients' network behind the user-segment router.
      routes:
        mgmtnet: {destination: 198.19.1.0/24, gateway: 198.18.1.254}
        usernet: {destination: 198.18.0.0/24, gateway: 198.18.2.254}
        mysqlnet: {destination: 198.18.4.0/23, gateway: 198.18.3.254}
        httpnet: {destination: 198.18.6.0/24, gateway: 198.18.3.254}
        # the lab's own: the external network behind the BGP neighbor (up1,
        # lab/plan.py), whose client reaches the VIPs by the announced /32s
        extnet: {destination: 198.19.2.0/24, gateway: 198.18.2.1}

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
              percona_mysql-1: {address: 198.18.4.2, port: 3306}
              percona_mysql-2: {address: 198.18.4.3, port: 3306, backup: true}
              percona_mysql-3: {address: 198.18.4.4, port: 3306, backup: true}
          galera_b:
            kind: galera
            check: {type: tcp-check, port: 9200, expect: 'string is\ running.'}
            default_server: {inter: 2s, downinter: 5s, rise: 3, fall: 2, slowstart: 60s, maxconn: 300, maxqueue: 128, weight: 100}
            servers:
              percona_mysql-4: {address: 198.18.5.2, port: 3306, backup: true}
              percona_mysql-5: {address: 198.18.5.3, port: 3306, backup: true}
              percona_mysql-6: {address: 198.18.5.4, port: 3306}
          web_a:
            kind: http
            servers:
              http_srv-1: {address: 198.18.6.1, port: 80}
              http_srv-2: {address: 198.18.6.2, port: 80}
          web_b:
            kind: http
            servers:
              http_srv-3: {address: 198.18.6.3, port: 80}
              http_srv-4: {address: 198.18.6.4, port: 80}

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
        password: clustercheck-lab-pw
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
              address: 198.18.2.1
              remote_as: 65001
              md5sig_password: lab-bgp-md5-key
              # the lab's own (not the seed's): a link cut on the MASTER is
              # seen by the upstream router in ~0.5 s (BFD), not 90 s
              bfd: true
              hold_time: 9
              med: 10
              localpref: 80
              communities: ['65000:180']
