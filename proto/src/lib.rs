//! Dialtone's public API, generated from `proto/dialtone/**.proto`.
//!
//! Messages also implement canonical proto3 JSON (`serde`) through pbjson.

/// Every service and message above, as an encoded `FileDescriptorSet`: what a node's
/// `grpc.reflection.v1` serves to grpcurl and other tools.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dialtone_descriptor.bin"));

/// `dialtone.config.v1`: sites, edge groups, base settings, phones.
pub mod config {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/dialtone.config.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/dialtone.config.v1.serde.rs"));

        impl std::fmt::Debug for TrunkCredentials {
            // Whatever prints a trunk (a log, a test failure) never prints its password.
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("TrunkCredentials")
                    .field("username", &self.username)
                    .field(
                        "password",
                        &if self.password.is_empty() {
                            ""
                        } else {
                            "<hidden>"
                        },
                    )
                    .field("realm", &self.realm)
                    .field("has_password", &self.has_password)
                    .finish()
            }
        }
    }
}

/// `dialtone.edge.v1`: the SIP edge's bindings and phone actions.
pub mod edge {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/dialtone.edge.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/dialtone.edge.v1.serde.rs"));
    }
}

/// `dialtone.provisioning.v1`: what phones fetched against what they should run.
pub mod provisioning {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/dialtone.provisioning.v1.rs"));
        include!(concat!(
            env!("OUT_DIR"),
            "/dialtone.provisioning.v1.serde.rs"
        ));
    }
}

/// `dialtone.status.v1`: the live status of every phone, line and edge.
pub mod status {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/dialtone.status.v1.rs"));
        include!(concat!(env!("OUT_DIR"), "/dialtone.status.v1.serde.rs"));
    }
}

/// `grpc.health.v1`: the standard health checking protocol, served by every node.
pub mod health {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
    }
}
