# The lab's master serves the lab's pair to every lab minion.
base:
  '*':
    - lb
  'db-*':
    - clustercheck
  'lb-*':
    - carp
