//! Persisted state: one JSON document per object, written atomically.
