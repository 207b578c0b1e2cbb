//! The store key layout, the one place it is written. Every role reads and writes the
//! store through these names; nothing else spells a key.
//!
//! | Key | Value | Written by | Read by | Lease |
//! |---|---|---|---|---|
//! | `config/sites/{id}` | `Site` | config | all roles (watch) | no |
//! | `config/edge-groups/{id}` | `EdgeGroup` | config | all roles (watch) | no |
//! | `config/base-settings/{id}` | `BaseSettings` | config | all roles (watch) | no |
//! | `config/phones/{id}` | `Phone` (with `StoredCredentials`) | config | all roles (watch) | no |
//! | `config/peers/{id}` | `Peer` | config | edge (watch) | no |
//! | `config/users/{id}` | `User` | config | edge (watch) | no |
//! | `config/trunks/{id}` | `Trunk` | config | edge (watch) | no |
//! | `config/media-servers/{id}` | `MediaServer` | config | edge (watch) | no |
//! | `index/hardware/{hw}` | phone id | config | config (uniqueness) | no |
//! | `index/sip-user/{user}` | phone id | config | config (uniqueness) | no |
//! | `index/extension/{site}/{extension}` | `phone/{id}` or `user/{id}` | config | config (uniqueness within a site) | no |
//! | `index/site-code/{code}` | site id | config | config (uniqueness) | no |
//! | `upgrades/extensions-indexed` | `1` | config (once) | config (start) | no |
//! | `index/site-phones/{site}/{phone}` | empty | config | config (lists, references) | no |
//! | `index/base-phones/{base}/{phone}` | empty | config | config (lists, references) | no |
//! | `index/phone-names/{name}\u{1}{phone}` | empty | config | config (sorted list by name) | no |
//! | `index/group-sites/{group}/{site}` | empty | config | config (references) | no |
//! | `index/site-users/{site}/{user}` | empty | config | config (references) | no |
//! | `index/user-phones/{user}/{phone}` | empty | config | config (references) | no |
//! | `index/trunk-sites/{trunk}/{site}` | empty | config | config (references) | no |
//! | `index/peer-trunks/{peer}/{trunk}` | empty | config | config (references) | no |
//! | `members/{role}/{node}` | `Member` | every node | config, edge, provisioning | yes |
//! | `bindings/{phone}/{line}/{node}` | `Binding` | the edge holding it | status (watch), edge, config | yes |
//! | `actions/{node}/{phone}` | `PhoneAction` | config, provisioning | edge `node` (watch) | no |
//! | `action-results/{action_id}` | `PhoneActionResult` | edge | config (watch) | yes (60 s) |
//! | `provision/{phone}` | `ProvisionState` | provisioning | status (watch), provisioning | no |
//! | `trunk-health/{node}` | `TrunkHealth` | the edge probing the trunks | status (watch) | yes |
//! | `media-health/{node}` | `MediaHealth` | the edge pinging the media servers | status (watch) | yes |

/// Separator between a phone's name and id in the name index (sorts before any printable
/// character, so "abc" phones list before "abcd" ones).
pub const NAME_SEP: char = '\u{1}';

/// Everything the config role owns (what an edge's credentials cache follows).
pub const CONFIG: &str = "config/";
pub const SITES: &str = "config/sites/";
pub const EDGE_GROUPS: &str = "config/edge-groups/";
pub const BASE_SETTINGS: &str = "config/base-settings/";
pub const PHONES: &str = "config/phones/";
pub const PEERS: &str = "config/peers/";
pub const USERS: &str = "config/users/";
pub const TRUNKS: &str = "config/trunks/";
pub const MEDIA_SERVERS: &str = "config/media-servers/";
/// Every node's membership record, `members/{role}/{node}`.
pub const MEMBERS: &str = "members/";
/// Under [`MEMBERS`]: the edges' membership records (`role_members("edge")`).
pub const EDGE_MEMBERS: &str = "members/edge/";
/// Every edge's record of its binding leases, `node-leases/{node}`.
pub const NODE_LEASES: &str = "node-leases/";
/// Every edge's claim of its node id, `node-claims/{node}` (see [`claim`]).
pub const CLAIMS: &str = "node-claims/";
/// Every edge's bindings, `bindings/{phone}/{line}/{node}`.
pub const BINDINGS: &str = "bindings/";
/// Every provisioning record, `provision/{phone}`.
pub const PROVISION: &str = "provision/";
/// Every edge's trunk keep-alive findings, `trunk-health/{node}`.
pub const TRUNK_HEALTH: &str = "trunk-health/";
/// Every edge's media server pings, `media-health/{node}`.
pub const MEDIA_HEALTH: &str = "media-health/";

pub fn site(id: &str) -> String {
    format!("{SITES}{id}")
}
pub fn edge_group(id: &str) -> String {
    format!("{EDGE_GROUPS}{id}")
}
pub fn base_settings(id: &str) -> String {
    format!("{BASE_SETTINGS}{id}")
}
pub fn peer(id: &str) -> String {
    format!("{PEERS}{id}")
}
pub fn media_server(id: &str) -> String {
    format!("{MEDIA_SERVERS}{id}")
}
pub fn trunk(id: &str) -> String {
    format!("{TRUNKS}{id}")
}
pub fn user(id: &str) -> String {
    format!("{USERS}{id}")
}
pub fn phone(id: &str) -> String {
    format!("{PHONES}{id}")
}
/// What edge `node` finds of the trunk targets it probes (TrunkHealth, on its lease).
pub fn trunk_health(node: &str) -> String {
    format!("{TRUNK_HEALTH}{node}")
}
pub fn media_health(node: &str) -> String {
    format!("{MEDIA_HEALTH}{node}")
}
/// What the provisioning role last saw of a phone (ProvisionState).
pub fn provision(id: &str) -> String {
    format!("{PROVISION}{id}")
}
/// The members of one role, `members/{role}/`.
pub fn role_members(role: &str) -> String {
    format!("{MEMBERS}{role}/")
}
/// The record of one edge's binding leases (on the last of them, the longest-lived): the
/// next process with its node id takes them over.
pub fn node_leases(node: &str) -> String {
    format!("{NODE_LEASES}{node}")
}
/// The claim of an edge's node id (no lease): the newest process with that id wrote it, and
/// writes for the node only while the key keeps that write's revision (`dialtone_store`'s
/// `lifecycle/claim.rs`).
pub fn claim(node: &str) -> String {
    format!("{CLAIMS}{node}")
}
/// One node's membership record (on its lease).
pub fn member(role: &str, node: &str) -> String {
    format!("{MEMBERS}{role}/{node}")
}
/// A phone's bindings, `bindings/{phone}/{line}/{node}` (written by edges on their lease).
pub fn phone_bindings(phone: &str) -> String {
    format!("{BINDINGS}{phone}/")
}
/// One line's bindings on every edge, `bindings/{phone}/{line}/`.
pub fn line_bindings(phone: &str, line: u32) -> String {
    format!("{BINDINGS}{phone}/{line}/")
}
/// One line's bindings on one edge.
pub fn binding(phone: &str, line: u32, node: &str) -> String {
    format!("{BINDINGS}{phone}/{line}/{node}")
}
/// The parts of a binding key: phone, line, node. None for anything else.
pub fn parse_binding(key: &str) -> Option<(&str, u32, &str)> {
    let mut parts = key.strip_prefix(BINDINGS)?.splitn(3, '/');
    let phone = parts.next().filter(|p| !p.is_empty())?;
    let line = parts.next()?.parse().ok()?;
    let node = parts.next().filter(|n| !n.is_empty())?;
    Some((phone, line, node))
}
/// The actions an edge is asked to perform, `actions/{node}/{phone}`.
pub fn phone_actions(node: &str) -> String {
    format!("actions/{node}/")
}
/// The action an edge is asked to perform on one phone.
pub fn phone_action(node: &str, phone: &str) -> String {
    format!("actions/{node}/{phone}")
}
/// An edge's report on an action that carried an id.
pub fn action_result(action_id: &str) -> String {
    format!("action-results/{action_id}")
}
/// Hardware id → phone id (uniqueness).
pub fn hardware(hw: &str) -> String {
    format!("index/hardware/{hw}")
}
/// SIP user → phone id (uniqueness).
pub fn sip_user(user: &str) -> String {
    format!("index/sip-user/{user}")
}
/// A site's extension → its owner, `phone/{id}` (uniqueness within the site; users will
/// own extensions in the same space, so the owner says what it is).
pub fn extension(site: &str, extension: &str) -> String {
    format!("index/extension/{site}/{extension}")
}
/// Written once every phone created before extensions were unique has its index entry.
pub const EXTENSIONS_BACKFILLED: &str = "upgrades/extensions-indexed";
/// A site code → the site holding it (uniqueness).
pub fn site_code(code: &str) -> String {
    format!("index/site-code/{code}")
}
/// The owner value of an extension held by a phone.
pub fn extension_owner_phone(phone: &str) -> String {
    format!("phone/{phone}")
}
/// The owner value of an extension held by a user.
pub fn extension_owner_user(user: &str) -> String {
    format!("user/{user}")
}
/// Users of a site.
pub fn site_users(site: &str) -> String {
    format!("index/site-users/{site}/")
}
/// Phones assigned to a user (companion mode).
pub fn user_phones(user: &str) -> String {
    format!("index/user-phones/{user}/")
}
/// Sites whose outbound routes name a trunk.
pub fn trunk_sites(trunk: &str) -> String {
    format!("index/trunk-sites/{trunk}/")
}
/// Trunks whose carrier is a peer.
pub fn peer_trunks(peer: &str) -> String {
    format!("index/peer-trunks/{peer}/")
}
/// Phones of a site.
pub fn site_phones(site: &str) -> String {
    format!("index/site-phones/{site}/")
}
/// Phones of a base-settings profile.
pub fn base_phones(base: &str) -> String {
    format!("index/base-phones/{base}/")
}
/// A phone's name, case-folded → phone id (names are unique in the organisation, as the
/// seed's device names are; see [`fold_name`]).
pub fn unique_phone_name(name: &str) -> String {
    format!("index/unique-phone-name/{}", fold_name(name))
}
/// What two phone names must differ in: "Lobby" and " lobby" are one name.
pub fn fold_name(name: &str) -> String {
    name.trim().to_lowercase()
}
/// Written once every phone created before names were unique has its name entry.
pub const PHONE_NAMES_BACKFILLED: &str = "upgrades/phone-names-indexed";
/// Phones by name.
pub const PHONE_NAMES: &str = "index/phone-names/";
pub fn phone_name(name: &str, id: &str) -> String {
    format!("{PHONE_NAMES}{name}{NAME_SEP}{id}")
}
/// Sites of an edge group.
pub fn group_sites(group: &str) -> String {
    format!("index/group-sites/{group}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_keys_round_trip_and_nest() {
        let k = binding("p1", 2, "edge-a");
        assert_eq!(k, "bindings/p1/2/edge-a");
        assert_eq!(parse_binding(&k), Some(("p1", 2, "edge-a")));
        assert!(k.starts_with(&line_bindings("p1", 2)));
        assert!(k.starts_with(&phone_bindings("p1")));
        for bad in [
            "bindings/p1/x/edge-a",
            "bindings/p1/2",
            "bindings//2/e",
            "bindings/p1/2/",
            "config/phones/p1",
        ] {
            assert_eq!(parse_binding(bad), None, "{bad}");
        }
        assert!(member("edge", "n1").starts_with(&role_members("edge")));
        assert!(role_members("edge").starts_with(MEMBERS));
        assert_eq!(role_members("edge"), EDGE_MEMBERS);
        for k in [
            SITES,
            EDGE_GROUPS,
            BASE_SETTINGS,
            PHONES,
            PEERS,
            USERS,
            TRUNKS,
            MEDIA_SERVERS,
        ] {
            assert!(k.starts_with(CONFIG));
        }
        // A longer name never sorts between a name and its own phones.
        assert!(phone_name("abc", "z") < phone_name("abcd", "a"));
    }
}
