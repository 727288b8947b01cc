//! The minimum image store that docker import/load and docker run need.
