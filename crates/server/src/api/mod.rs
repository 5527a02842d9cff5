//! The control plane: the Novita/E2B REST API.
