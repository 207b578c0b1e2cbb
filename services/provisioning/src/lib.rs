//! The provisioning role: managed phones fetch their vendor configuration files over HTTPS
//! by MAC (or FQDN), authenticated with their device credential.

pub mod document;
pub mod files;
pub mod render;
