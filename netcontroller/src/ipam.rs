//! Address management: subnets from pools, addresses per network.
