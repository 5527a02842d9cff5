//! Templates: the read-only layers a sandbox starts from.
