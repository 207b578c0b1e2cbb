//! Dialtone's public API, generated from `proto/dialtone/**.proto`.
//!
//! Messages also implement canonical proto3 JSON (`serde`) through pbjson.

/// Every service and message above, as an encoded `FileDescriptorSet`: what a node's
/// `grpc.reflection.v1` serves to grpcurl and other tools.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/dialtone_descriptor.bin"));

/// Every message's top-level fields (name, number), read once from [`FILE_DESCRIPTOR_SET`].
static FIELDS: std::sync::LazyLock<std::collections::HashMap<String, Vec<(String, u32)>>> =
    std::sync::LazyLock::new(|| {
        use prost::Message as _;
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled into this crate decodes");
        let mut out = std::collections::HashMap::new();
        for file in &set.file {
            for m in &file.message_type {
                let fields = m
                    .field
                    .iter()
                    .map(|f| (f.name().to_owned(), f.number() as u32))
                    .collect();
                out.insert(format!("{}.{}", file.package(), m.name()), fields);
            }
        }
        out
    });

/// The top-level fields (proto name, number) of the message `full_name` (e.g.
/// `dialtone.config.v1.Site`) as this build knows them: what an update mask may name, and
/// what a node can tell from the fields a newer release added.
pub fn message_fields(full_name: &str) -> &'static [(String, u32)] {
    FIELDS.get(full_name).map(Vec::as_slice).unwrap_or(&[])
}

pub mod wire;

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
