//! Validation of trusted SIP peers as the config role stores them. What their addresses
//! and transports mean, and how an edge matches them, is `dialtone_domain::peers`.

use dialtone_domain::peers::{PeerAddress, TRANSPORTS, is_tls_name};
use dialtone_proto::config::v1::Peer;

use crate::{
    error::{Result, check},
    validate,
};

/// Checks a peer as stored: id, name, 0-32 valid addresses and 0-32 TLS names (at least
/// one of either), known transports.
pub fn validate_peer(p: &Peer) -> Result<()> {
    check("peer.id", validate::slug(&p.id))?;
    check("peer.name", validate::name(&p.name, 0, 200))?;
    if p.addresses.len() > 32 || p.tls_names.len() > 32 {
        return check(
            "peer.addresses",
            Err("at most 32 addresses and 32 TLS names".into()),
        );
    }
    if p.addresses.is_empty() && p.tls_names.is_empty() {
        return check(
            "peer.addresses",
            Err("a peer needs addresses or TLS names".into()),
        );
    }
    for (i, n) in p.tls_names.iter().enumerate() {
        let named = if is_tls_name(n) {
            Ok(())
        } else {
            Err(format!("'{n}' is not a certificate name"))
        };
        check(format!("peer.tls_names[{i}]"), named)?;
    }
    for (i, a) in p.addresses.iter().enumerate() {
        check(
            format!("peer.addresses[{i}]"),
            PeerAddress::parse(a).map(|_| ()).map_err(|e| e.to_string()),
        )?;
    }
    for (i, t) in p.transports.iter().enumerate() {
        if !TRANSPORTS.contains(&t.as_str()) {
            return check(
                format!("peer.transports[{i}]"),
                Err(format!("'{t}' is not one of {}", TRANSPORTS.join(", "))),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_validate_naming_the_bad_field() {
        let mut p = Peer {
            id: "pbx".into(),
            name: "Office PBX".into(),
            addresses: vec!["192.0.2.10".into()],
            transports: vec!["udp".into(), "tls".into()],
            ..Default::default()
        };
        validate_peer(&p).unwrap();
        // Matched by its certificate's name (`dialtone_domain::peers` tests the matching).
        let sbc = Peer {
            id: "carrier".into(),
            tls_names: vec!["SBC.example.com".into()],
            ..Default::default()
        };
        validate_peer(&sbc).unwrap();
        let bad = Peer {
            tls_names: vec!["a b".into()],
            ..sbc.clone()
        };
        assert!(
            validate_peer(&bad)
                .unwrap_err()
                .to_string()
                .contains("peer.tls_names[0]")
        );
        p.transports = vec!["sctp".into()];
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("peer.transports[0]")
        );
        p.transports.clear();
        p.addresses.clear();
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("peer.addresses")
        );
        p.addresses = vec!["192.0.2.10".into(), "bad".into()];
        assert!(
            validate_peer(&p)
                .unwrap_err()
                .to_string()
                .contains("peer.addresses[1]")
        );
    }
}
