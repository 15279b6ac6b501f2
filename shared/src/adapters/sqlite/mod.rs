//! The embedded backend on one SQLite file (WAL): the message store, the tenant store and a
//! queue with SQS semantics.
