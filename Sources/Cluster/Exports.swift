// One `import Cluster` gives the whole public API: the core types are re-exported.
@_exported import ClusterCore
