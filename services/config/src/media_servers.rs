//! Media servers (rtpengines the edges anchor calls' media at): validation and storage.
//! Sites name media regions, not servers, so nothing references a media server and one
//! can always be deleted (its calls keep their media; new calls go to the region's
//! others).

use dialtone_domain::keys;
use dialtone_proto::config::v1::MediaServer;

use crate::{
    ConfigCore,
    error::{Result, check},
    repo::{self, must_load},
    validate,
};

/// Checks a media server as stored: id, name, region, an `ip:port` ng address, weight,
/// ICE server URLs.
pub fn validate_media_server(m: &MediaServer) -> Result<()> {
    check("media_server.id", validate::slug(&m.id))?;
    check("media_server.name", validate::name(&m.name, 0, 200))?;
    check("media_server.region", validate::slug(&m.region))?;
    let ng = m
        .ng_address
        .parse::<std::net::SocketAddr>()
        .map_err(|_| format!("'{}' is not ip:port", m.ng_address))
        .and_then(|a| {
            (a.port() != 0)
                .then_some(())
                .ok_or_else(|| "the port must not be 0".to_owned())
        });
    check("media_server.ng_address", ng)?;
    check("media_server.weight", validate::range(m.weight, 0, 1000))?;
    if m.turn_urls.len() > 8 {
        return Err(crate::error::ConfigError::invalid(
            "media_server.turn_urls",
            "at most 8",
        ));
    }
    for (i, u) in m.turn_urls.iter().enumerate() {
        check(
            format!("media_server.turn_urls[{i}]"),
            dialtone_media::turn::check_url(u).map_err(|why| format!("'{u}' {why}")),
        )?;
    }
    Ok(())
}

impl ConfigCore {
    pub async fn create_media_server(&self, mut m: MediaServer) -> Result<MediaServer> {
        validate_media_server(&m)?;
        m.version = 0;
        let key = keys::media_server(&m.id);
        m.version = self
            .create_absent(&key, &m, ("media server", "media server id"), &m.id)
            .await?;
        Ok(m)
    }

    pub async fn get_media_server(&self, id: &str) -> Result<MediaServer> {
        let key = keys::media_server(id);
        let (mut m, v): (MediaServer, i64) =
            must_load(&self.store, &key, "media server", id).await?;
        m.version = v;
        Ok(m)
    }

    pub async fn update_media_server(&self, mut m: MediaServer) -> Result<MediaServer> {
        validate_media_server(&m)?;
        let version = std::mem::take(&mut m.version);
        let key = keys::media_server(&m.id);
        m.version = self
            .put_guarded(&key, version, &m, "media server", &m.id)
            .await?;
        Ok(m)
    }

    pub async fn delete_media_server(&self, id: &str, version: i64) -> Result<i64> {
        let key = keys::media_server(id);
        self.delete_unused(&key, version, (vec![], vec![]), &[], "media server", id)
            .await
    }

    pub async fn list_media_servers(
        &self,
        size: i32,
        token: &str,
    ) -> Result<(Vec<MediaServer>, String)> {
        repo::list_page(
            &self.store,
            keys::MEDIA_SERVERS,
            "media server",
            size,
            token,
            |m: &mut MediaServer, v| m.version = v,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_servers_validate_naming_the_bad_field() {
        let good = MediaServer {
            id: "rtp-1".into(),
            region: "eu-west".into(),
            ng_address: "10.0.0.5:2223".into(),
            weight: 10,
            turn_urls: vec!["turn:203.0.113.5:3478?transport=udp".into()],
            ..Default::default()
        };
        validate_media_server(&good).unwrap();
        // (a change, the field the error names)
        type Change = fn(&mut MediaServer);
        let cases: [(Change, &str); 8] = [
            (|m| m.id = "Bad Id".into(), "media_server.id"),
            (|m| m.region = String::new(), "media_server.region"),
            (
                |m| m.ng_address = "rtpengine:2223".into(),
                "media_server.ng_address",
            ),
            (
                |m| m.ng_address = "10.0.0.5".into(),
                "media_server.ng_address",
            ),
            (
                |m| m.ng_address = "10.0.0.5:0".into(),
                "media_server.ng_address",
            ),
            (|m| m.weight = 1001, "media_server.weight"),
            (
                |m| m.turn_urls.push("http://turn.example.com".into()),
                "media_server.turn_urls[1]: 'http://turn.example.com' scheme must be",
            ),
            (
                |m| m.turn_urls = vec!["stun:a".into(); 9],
                "media_server.turn_urls",
            ),
        ];
        for (change, field) in cases {
            let mut m = good.clone();
            change(&mut m);
            let e = validate_media_server(&m).unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        }
    }
}
