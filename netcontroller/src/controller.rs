//! Networks, endpoints and sandboxes: the controller proper.
