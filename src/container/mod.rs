//! Containers: store, lifecycle, OCI spec, containerd.
