//! Routes envd requests to the sandbox they name.
