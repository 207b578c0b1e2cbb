//! Phones: validation (pure), the index entries a phone owns, and transactional writes.
//!
//! A phone owns these keys, written and removed in the same transaction as the phone:
//! `index/hardware/{hw}`, `index/sip-user/{user}`, `index/unique-phone-name/{folded name}`
//! and, for a site-assigned phone, `index/extension/{site}/{extension}` (uniqueness:
//! created only if absent), and the listing indexes by site, by profile and by name.

use dialtone_domain::{
    credentials::{self, CredentialKey},
    keys,
};
use dialtone_proto::config::v1::{
    Assignment, BaseSettings, DeviceCredentials, LineCredentials, MetaBase, Phone, PhoneKind, Site,
    StoredCredentials, assignment::Mode,
};
use dialtone_store::{Compare, Op};

use crate::{
    ConfigCore,
    error::{ConfigError, Result, check},
    repo::{
        explain_guard, load, must_load, must_load_at, must_load_keeping, now_ms, put, put_index,
        put_keeping, release_owned, unknown_at, version_guard,
    },
    settings, validate,
};

/// Which meta-bases a phone kind may use.
pub(crate) fn kind_allows(kind: PhoneKind, meta: MetaBase) -> bool {
    use MetaBase as M;
    match kind {
        PhoneKind::Managed => {
            matches!(meta, M::PolyVvx | M::PolyEdgeE | M::Yealink | M::Audiocodes)
        }
        PhoneKind::Unmanaged => matches!(
            meta,
            M::GenericSip | M::PolyVvx | M::PolyEdgeE | M::Yealink | M::Audiocodes
        ),
        PhoneKind::Webrtc => matches!(meta, M::Webrtc | M::DesktopSoftphone),
        PhoneKind::Remote | PhoneKind::Unspecified => false,
    }
}

/// Validates and normalises a phone's own fields against its profile (None for REMOTE).
/// Line users are not checked here: on create they are suffixes, on update they may be whole.
pub fn validate_phone(p: &mut Phone, base: Option<&BaseSettings>) -> Result<()> {
    check("phone.name", validate::name(&p.name, 1, 200))?;
    check("phone.site_id", validate::slug(&p.site_id))?;
    let kind = PhoneKind::try_from(p.kind).unwrap_or(PhoneKind::Unspecified);
    if kind == PhoneKind::Unspecified {
        return Err(ConfigError::invalid(
            "phone.kind",
            "must be MANAGED, UNMANAGED, WEBRTC or REMOTE",
        ));
    }
    if !p.hardware_id.is_empty() {
        p.hardware_id = validate::hardware_id(&p.hardware_id)
            .map_err(|r| ConfigError::invalid("phone.hardware_id", r))?;
    } else if kind == PhoneKind::Managed {
        return Err(ConfigError::invalid(
            "phone.hardware_id",
            "required for MANAGED phones (their MAC address)",
        ));
    }
    if kind == PhoneKind::Remote {
        if !p.base_settings_id.is_empty() {
            return Err(ConfigError::invalid(
                "phone.base_settings_id",
                "REMOTE phones have no base settings",
            ));
        }
        if !p.lines.is_empty() {
            return Err(ConfigError::invalid(
                "phone.lines",
                "REMOTE phones have no lines",
            ));
        }
        if p.overrides.is_some() {
            return Err(ConfigError::invalid(
                "phone.overrides",
                "REMOTE phones have no settings",
            ));
        }
        check(
            "phone.remote_address",
            validate::remote_address(&p.remote_address),
        )?;
    } else {
        if !p.remote_address.is_empty() {
            return Err(ConfigError::invalid(
                "phone.remote_address",
                "only REMOTE phones have a remote address",
            ));
        }
        check(
            "phone.base_settings_id",
            validate::slug(&p.base_settings_id),
        )?;
        if p.lines.is_empty() || p.lines.len() > 16 {
            return Err(ConfigError::invalid("phone.lines", "must have 1-16 lines"));
        }
        for (i, l) in p.lines.iter().enumerate() {
            check(
                format!("phone.lines[{i}].display_name"),
                validate::name(&l.display_name, 0, 100),
            )?;
        }
        if let Some(b) = base {
            let meta = MetaBase::try_from(b.meta_base).unwrap_or(MetaBase::Unspecified);
            if !kind_allows(kind, meta) {
                return Err(ConfigError::invalid(
                    "phone.base_settings_id",
                    format!(
                        "a {} phone cannot use a {} profile",
                        kind.as_str_name(),
                        meta.as_str_name()
                    ),
                ));
            }
            if let Some(o) = &p.overrides {
                settings::validate_fields(o, meta, "phone.overrides")?;
                let profile = b.settings.clone().unwrap_or_default();
                settings::validate_effective(
                    &settings::effective(meta, &profile, Some(o)),
                    "phone.overrides",
                )?;
            }
        }
    }
    match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        None => {
            p.assignment = Some(Assignment {
                mode: Some(Mode::Unassigned(Default::default())),
            })
        }
        Some(Mode::User(u)) => check(
            "phone.assignment.user.user_id",
            validate::user_id(&u.user_id),
        )?,
        Some(Mode::Site(s)) => {
            check(
                "phone.assignment.site.extension",
                validate::digits(&s.extension, 2, 10),
            )?;
            if !s.outbound_caller_id.is_empty() {
                check(
                    "phone.assignment.site.outbound_caller_id",
                    validate::e164(&s.outbound_caller_id),
                )?;
            }
        }
        Some(Mode::Unassigned(_)) => {}
    }
    Ok(())
}

/// Completes new lines: the site's prefix and the admin's suffix (or a generated one) make
/// the SIP user; the admin's typed password or a generated one is hashed into the line
/// (the typed one never stored) and returned in clear once.
pub fn complete_new_lines(
    p: &mut Phone,
    indices: &[usize],
    prefix: &str,
    realm: &str,
    key: &CredentialKey,
) -> Result<Vec<LineCredentials>> {
    let mut out = Vec::with_capacity(indices.len());
    for &i in indices {
        let line = &mut p.lines[i];
        let suffix = if line.sip_user.is_empty() {
            credentials::generate_suffix()
        } else {
            line.sip_user.clone()
        };
        check(
            format!("phone.lines[{i}].sip_user"),
            validate::sip_user_suffix(&suffix),
        )?;
        line.sip_user = format!("{prefix}{suffix}");
        // A user this phone had before starts after its last generation: no password it
        // was ever given (and perhaps revoked) is given again.
        let generation = p
            .retired_line_generations
            .get(&line.sip_user)
            .map_or(1, |g| g + 1);
        let typed = std::mem::take(&mut line.password);
        let (password, credentials) = if typed.is_empty() {
            line_credentials(key, &p.id, &line.sip_user, realm, generation)
        } else {
            check(
                format!("phone.lines[{i}].password"),
                validate::typed_password(&typed),
            )?;
            // Generation 0: not a password Dialtone can derive again.
            let stored = credentials::ha1(&line.sip_user, realm, &typed);
            (typed, stored)
        };
        line.credentials = Some(credentials);
        out.push(LineCredentials {
            line_index: i as u32,
            sip_user: line.sip_user.clone(),
            realm: realm.to_owned(),
            password,
        });
    }
    for (i, l) in p.lines.iter().enumerate() {
        if p.lines[..i].iter().any(|o| o.sip_user == l.sip_user) {
            return Err(ConfigError::invalid(
                format!("phone.lines[{i}].sip_user"),
                format!("'{}' is used twice", l.sip_user),
            ));
        }
    }
    Ok(out)
}

/// A written phone with the credentials shown once.
#[derive(Debug)]
pub struct Written {
    /// The phone as stored, without credentials.
    pub phone: Phone,
    /// Clear credentials of the lines created by the write.
    pub lines: Vec<LineCredentials>,
    /// Clear device credential, when the write created it.
    pub device: Option<DeviceCredentials>,
}

/// A line's derived password of `generation` and the hashes the store keeps of it.
fn line_credentials(
    key: &CredentialKey,
    phone_id: &str,
    sip_user: &str,
    realm: &str,
    generation: u32,
) -> (String, StoredCredentials) {
    let password = key.line_password(phone_id, sip_user, generation);
    let mut stored = credentials::ha1(sip_user, realm, &password);
    stored.generation = generation;
    (password, stored)
}

/// Phones with a hardware id (MAC or FQDN) fetch their configuration from the
/// provisioning role, so they get a device credential; REMOTE phones never register.
pub fn fetches_configuration(p: &Phone) -> bool {
    !p.hardware_id.is_empty() && p.kind != PhoneKind::Remote as i32
}

/// The provisioning credential of a managed phone at its current generation (none: 0).
pub fn device_credentials(
    key: &CredentialKey,
    p: &Phone,
    realm: &str,
) -> Option<DeviceCredentials> {
    (p.device_credential_generation > 0 && !p.hardware_id.is_empty()).then(|| DeviceCredentials {
        user: p.hardware_id.clone(),
        realm: realm.to_owned(),
        password: key.device_password(&p.id, p.device_credential_generation),
    })
}

/// Listing index entries of a phone (not the uniqueness ones).
fn listing_keys(p: &Phone) -> Vec<String> {
    let mut k = vec![
        format!("{}{}", keys::site_phones(&p.site_id), p.id),
        keys::phone_name(&p.name, &p.id),
    ];
    k.extend(crate::users::companion_entry(p));
    if !p.base_settings_id.is_empty() {
        k.push(format!(
            "{}{}",
            keys::base_phones(&p.base_settings_id),
            p.id
        ));
    }
    k
}

/// A site-assigned phone's call patterns, against its site's number plan.
fn validate_overrides(p: &Phone, site: &Site) -> Result<()> {
    match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        Some(Mode::Site(s)) => crate::objects::validate_call_patterns(
            site,
            &s.call_patterns,
            "phone.assignment.site.call_patterns",
        ),
        _ => Ok(()),
    }
}

/// The key of the site extension a phone holds, if it is site-assigned.
fn extension_key(p: &Phone) -> Option<String> {
    match p.assignment.as_ref().and_then(|a| a.mode.as_ref()) {
        Some(Mode::Site(s)) => Some(keys::extension(&p.site_id, &s.extension)),
        _ => None,
    }
}

/// The compare a write of phone `p` carries when it is a companion of a user in
/// `user_site` (read by [`ConfigCore::companion_site`]): the user is still in that site.
fn companion_compare(p: &Phone, user_site: Option<&str>) -> Option<Compare> {
    let user = crate::users::companion_of(p)?;
    Some(match user_site {
        Some(site) => crate::users::companion_guard(user, site),
        None => Compare::Exists(keys::user(user)),
    })
}

/// The compares and ops creating a phone and its index entries; `user_site` is the site of
/// the user a companion phone names.
pub fn create_txn(p: &Phone, user_site: Option<&str>) -> (Vec<Compare>, Vec<Op>) {
    let mut compares = vec![
        Compare::Absent(keys::phone(&p.id)),
        Compare::Exists(keys::site(&p.site_id)),
    ];
    compares.extend(companion_compare(p, user_site));
    let mut ops = vec![put(keys::phone(&p.id), p)];
    if !p.base_settings_id.is_empty() {
        compares.push(Compare::Exists(keys::base_settings(&p.base_settings_id)));
    }
    if !p.hardware_id.is_empty() {
        compares.push(Compare::Absent(keys::hardware(&p.hardware_id)));
        ops.push(put_index(keys::hardware(&p.hardware_id), &p.id));
    }
    compares.push(Compare::Absent(keys::unique_phone_name(&p.name)));
    ops.push(put_index(keys::unique_phone_name(&p.name), &p.id));
    for l in &p.lines {
        compares.push(Compare::Absent(keys::sip_user(&l.sip_user)));
        ops.push(put_index(keys::sip_user(&l.sip_user), &p.id));
    }
    if let Some(k) = extension_key(p) {
        compares.push(Compare::Absent(k.clone()));
        ops.push(put_index(k, &keys::extension_owner_phone(&p.id)));
    }
    ops.extend(listing_keys(p).into_iter().map(|k| put_index(k, "")));
    (compares, ops)
}

/// A phone as the API returns it: never any credentials.
pub fn redact(mut p: Phone) -> Phone {
    for l in &mut p.lines {
        l.credentials = None;
        l.password.clear();
    }
    p
}

/// What a phone refers to, as read before its write.
pub(crate) struct References {
    pub site: Site,
    pub base: Option<BaseSettings>,
    /// The site of the user a companion phone names.
    pub user_site: Option<String>,
}

impl ConfigCore {
    /// Loads a phone's site and profile and checks the references exist (a companion
    /// phone's user too: see [`ConfigCore::companion_site`]).
    pub(crate) async fn references(&self, p: &Phone) -> Result<References> {
        let site: Site = load(&self.store, &keys::site(&p.site_id), "site")
            .await?
            .map(|(s, _)| s)
            .ok_or_else(|| ConfigError::missing("phone.site_id", "site", &p.site_id))?;
        let base = if p.base_settings_id.is_empty() {
            None
        } else {
            let b: BaseSettings = load(
                &self.store,
                &keys::base_settings(&p.base_settings_id),
                "base settings",
            )
            .await?
            .map(|(b, _)| b)
            .ok_or_else(|| {
                ConfigError::missing(
                    "phone.base_settings_id",
                    "base settings",
                    &p.base_settings_id,
                )
            })?;
            Some(b)
        };
        let user_site = self.companion_site(p).await?;
        Ok(References {
            site,
            base,
            user_site,
        })
    }

    /// Validates a new phone and fills in id, times and credentials (no IO besides reading
    /// its references, which the create transaction checks again).
    pub(crate) fn prepare_new(
        &self,
        mut p: Phone,
        site: &Site,
        base: Option<&BaseSettings>,
    ) -> Result<(Phone, Vec<LineCredentials>)> {
        validate_phone(&mut p, base)?;
        validate_overrides(&p, site)?;
        p.id = uuid::Uuid::new_v4().to_string();
        p.version = 0;
        p.retired_line_generations.clear();
        p.created_at_ms = now_ms();
        p.updated_at_ms = p.created_at_ms;
        if fetches_configuration(&p) {
            p.device_credential_generation = 1;
        }
        let all: Vec<usize> = (0..p.lines.len()).collect();
        let creds =
            complete_new_lines(&mut p, &all, &site.sip_user_prefix, &self.realm, &self.key)?;
        Ok((p, creds))
    }

    /// The compare and delete that release `p`'s site extension, when the index entry is
    /// this phone's: one another phone holds (a duplicate from before extensions were
    /// unique) stays, and the compare fails the write if the entry changes meanwhile.
    async fn release_extension(&self, p: &Phone) -> Result<Option<(Compare, Op)>> {
        match extension_key(p) {
            Some(k) => release_owned(&self.store, k, &keys::extension_owner_phone(&p.id)).await,
            None => Ok(None),
        }
    }

    /// Says why a create transaction failed.
    pub(crate) async fn explain_create(&self, p: &Phone) -> Result<ConfigError> {
        self.references(p).await?;
        if !p.hardware_id.is_empty()
            && let Some(kv) = self.store.get(&keys::hardware(&p.hardware_id)).await?
        {
            let owner = format!("phone {}", String::from_utf8_lossy(&kv.value));
            return Ok(ConfigError::AlreadyExists {
                what: "hardware id",
                value: p.hardware_id.clone(),
                owner,
            });
        }
        // After the hardware id: an import row a concurrent import created is EXISTING.
        if !p.name.is_empty()
            && let Some(kv) = self.store.get(&keys::unique_phone_name(&p.name)).await?
        {
            let owner = format!("phone {}", String::from_utf8_lossy(&kv.value));
            return Ok(ConfigError::AlreadyExists {
                what: "phone name",
                value: p.name.clone(),
                owner,
            });
        }
        for l in &p.lines {
            if let Some(kv) = self.store.get(&keys::sip_user(&l.sip_user)).await? {
                let owner = format!("phone {}", String::from_utf8_lossy(&kv.value));
                return Ok(ConfigError::AlreadyExists {
                    what: "sip user",
                    value: l.sip_user.clone(),
                    owner,
                });
            }
        }
        if let (Some(k), Some(Mode::Site(s))) = (
            extension_key(p),
            p.assignment.as_ref().and_then(|a| a.mode.as_ref()),
        ) && let Some(kv) = self.store.get(&k).await?
        {
            // The owner is `phone/{id}`: said as "phone {id}", as the other indexes do.
            let owner = String::from_utf8_lossy(&kv.value).replacen('/', " ", 1);
            return Ok(ConfigError::AlreadyExists {
                what: "extension",
                value: format!("{} in site {}", s.extension, p.site_id),
                owner,
            });
        }
        Ok(ConfigError::Contended {
            kind: "phone",
            id: p.id.clone(),
        })
    }

    /// Creates a phone; returns it with the clear credentials of its lines and device.
    pub async fn create_phone(&self, p: Phone) -> Result<Written> {
        let refs = self.references(&p).await?;
        let (mut p, creds) = self.prepare_new(p, &refs.site, refs.base.as_ref())?;
        let (compares, ops) = create_txn(&p, refs.user_site.as_deref());
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            return Err(self.explain_create(&p).await?);
        }
        p.version = r.revision;
        let device = device_credentials(&self.key, &p, &self.realm);
        Ok(Written {
            phone: redact(p),
            lines: creds,
            device,
        })
    }

    pub async fn get_phone(&self, id: &str) -> Result<Phone> {
        let (mut p, v): (Phone, i64) =
            must_load(&self.store, &keys::phone(id), "phone", id).await?;
        p.version = v;
        Ok(redact(p))
    }

    /// Updates a phone; returns it with the clear credentials of the lines it added and of
    /// its device when the update gave it its first one.
    pub async fn update_phone(&self, mut p: Phone) -> Result<Written> {
        let key = keys::phone(&p.id);
        let (current, current_version, unknown): (Phone, i64, _) =
            must_load_keeping(&self.store, &key, "phone", &p.id).await?;
        if p.kind != current.kind {
            return Err(ConfigError::invalid(
                "phone.kind",
                "cannot change; delete the phone and create it again",
            ));
        }
        let version = if p.version > 0 {
            p.version
        } else {
            current_version
        };
        let References {
            site,
            base,
            user_site,
        } = self.references(&p).await?;
        validate_phone(&mut p, base.as_ref())?;
        validate_overrides(&p, &site)?;
        // Server-only: the generations of the lines this phone lost, and of those it loses
        // now.
        p.retired_line_generations = current.retired_line_generations.clone();
        for c in &current.lines {
            if !p.lines.iter().any(|l| l.sip_user == c.sip_user) {
                let g = c.credentials.as_ref().map_or(0, |c| c.generation);
                let kept = p
                    .retired_line_generations
                    .entry(c.sip_user.clone())
                    .or_default();
                *kept = (*kept).max(g);
            }
        }
        // Lines whose user matches a current line keep their credentials; others are new.
        let mut new_lines = Vec::new();
        for (i, l) in p.lines.iter_mut().enumerate() {
            match current.lines.iter().find(|c| c.sip_user == l.sip_user) {
                Some(_) if !l.password.is_empty() => {
                    return Err(ConfigError::invalid(
                        format!("phone.lines[{i}].password"),
                        "an existing line's password changes with ResetLinePassword",
                    ));
                }
                Some(c) => l.credentials = c.credentials.clone(),
                None => new_lines.push(i),
            }
        }
        let creds = complete_new_lines(
            &mut p,
            &new_lines,
            &site.sip_user_prefix,
            &self.realm,
            &self.key,
        )?;
        p.device_credential_generation = current.device_credential_generation;
        if p.device_credential_generation == 0 && fetches_configuration(&p) {
            // A hardware id given later: the phone gets its first credential now.
            p.device_credential_generation = 1;
        }
        p.created_at_ms = current.created_at_ms;
        p.updated_at_ms = now_ms();
        p.version = 0;

        let mut compares = vec![
            version_guard(&key, version),
            Compare::Exists(keys::site(&p.site_id)),
        ];
        compares.extend(companion_compare(&p, user_site.as_deref()));
        if !p.base_settings_id.is_empty() {
            compares.push(Compare::Exists(keys::base_settings(&p.base_settings_id)));
        }
        let mut ops = vec![put_keeping(key.clone(), &p, &unknown)];
        if p.hardware_id != current.hardware_id {
            if !current.hardware_id.is_empty() {
                ops.push(Op::Delete(keys::hardware(&current.hardware_id)));
            }
            if !p.hardware_id.is_empty() {
                compares.push(Compare::Absent(keys::hardware(&p.hardware_id)));
                ops.push(put_index(keys::hardware(&p.hardware_id), &p.id));
            }
        }
        let renamed = keys::fold_name(&p.name) != keys::fold_name(&current.name);
        if renamed {
            if let Some((compare, delete)) =
                release_owned(&self.store, keys::unique_phone_name(&current.name), &p.id).await?
            {
                compares.push(compare);
                ops.push(delete);
            }
            compares.push(Compare::Absent(keys::unique_phone_name(&p.name)));
            ops.push(put_index(keys::unique_phone_name(&p.name), &p.id));
        }
        let (old_ext, new_ext) = (extension_key(&current), extension_key(&p));
        if old_ext != new_ext {
            if let Some((compare, delete)) = self.release_extension(&current).await? {
                compares.push(compare);
                ops.push(delete);
            }
            if let Some(k) = new_ext.clone() {
                compares.push(Compare::Absent(k.clone()));
                ops.push(put_index(k, &keys::extension_owner_phone(&p.id)));
            }
        }
        for l in current
            .lines
            .iter()
            .filter(|c| !p.lines.iter().any(|l| l.sip_user == c.sip_user))
        {
            ops.push(Op::Delete(keys::sip_user(&l.sip_user)));
        }
        for &i in &new_lines {
            compares.push(Compare::Absent(keys::sip_user(&p.lines[i].sip_user)));
            ops.push(put_index(keys::sip_user(&p.lines[i].sip_user), &p.id));
        }
        let (old_idx, new_idx) = (listing_keys(&current), listing_keys(&p));
        ops.extend(
            old_idx
                .iter()
                .filter(|k| !new_idx.contains(k))
                .map(|k| Op::Delete(k.clone())),
        );
        ops.extend(
            new_idx
                .into_iter()
                .filter(|k| !old_idx.contains(k))
                .map(|k| put_index(k, "")),
        );
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            explain_guard(&self.store, &key, version, "phone", &p.id).await?;
            let mut probe = p.clone();
            probe.lines = new_lines.iter().map(|&i| p.lines[i].clone()).collect();
            if probe.hardware_id == current.hardware_id {
                probe.hardware_id.clear();
            }
            if !renamed {
                probe.name.clear();
            }
            if new_ext == extension_key(&current) {
                probe.assignment = None;
            }
            return Err(self.explain_create(&probe).await?);
        }
        p.version = r.revision;
        let device = (current.device_credential_generation == 0)
            .then(|| device_credentials(&self.key, &p, &self.realm))
            .flatten();
        Ok(Written {
            phone: redact(p),
            lines: creds,
            device,
        })
    }

    /// Writes a phone whose index entries do not change, if it is still at `version`.
    async fn put_if_version(&self, p: &mut Phone, version: i64) -> Result<()> {
        let key = keys::phone(&p.id);
        p.updated_at_ms = now_ms();
        // Read here and written at `version` only: what it keeps is that version's.
        let unknown = unknown_at::<Phone>(&self.store, &key).await?;
        let r = self
            .store
            .txn(
                vec![version_guard(&key, version)],
                vec![put_keeping(key.clone(), p, &unknown)],
            )
            .await?;
        if !r.succeeded {
            explain_guard(&self.store, &key, version, "phone", &p.id).await?;
            return Err(ConfigError::Contended {
                kind: "phone",
                id: p.id.clone(),
            });
        }
        Ok(())
    }

    /// Gives a phone that fetches its configuration a new device credential.
    pub async fn reset_device_password(&self, id: &str, version: i64) -> Result<DeviceCredentials> {
        let key = keys::phone(id);
        let (mut p, version): (Phone, i64) =
            must_load_at(&self.store, &key, "phone", id, version).await?;
        if !fetches_configuration(&p) {
            return Err(ConfigError::invalid(
                "phone_id",
                "the phone has no hardware id, so it fetches no configuration",
            ));
        }
        p.device_credential_generation += 1;
        self.put_if_version(&mut p, version).await?;
        Ok(device_credentials(&self.key, &p, &self.realm).expect("checked above"))
    }

    pub async fn delete_phone(&self, id: &str, version: i64) -> Result<i64> {
        let key = keys::phone(id);
        let (current, version): (Phone, i64) =
            must_load_at(&self.store, &key, "phone", id, version).await?;
        let mut ops = vec![Op::Delete(key.clone()), Op::Delete(keys::provision(id))];
        if !current.hardware_id.is_empty() {
            ops.push(Op::Delete(keys::hardware(&current.hardware_id)));
        }
        ops.extend(
            current
                .lines
                .iter()
                .map(|l| Op::Delete(keys::sip_user(&l.sip_user))),
        );
        let mut compares = vec![version_guard(&key, version)];
        if let Some((compare, delete)) = self.release_extension(&current).await? {
            compares.push(compare);
            ops.push(delete);
        }
        // A name another phone holds (two phones named alike before names were unique)
        // stays that phone's.
        if let Some((compare, delete)) =
            release_owned(&self.store, keys::unique_phone_name(&current.name), id).await?
        {
            compares.push(compare);
            ops.push(delete);
        }
        ops.extend(listing_keys(&current).into_iter().map(Op::Delete));
        let r = self.store.txn(compares, ops).await?;
        if !r.succeeded {
            explain_guard(&self.store, &key, version, "phone", id).await?;
            return Err(ConfigError::Contended {
                kind: "phone",
                id: id.to_owned(),
            });
        }
        Ok(r.revision)
    }

    pub async fn reset_line_password(
        &self,
        id: &str,
        line_index: u32,
        version: i64,
    ) -> Result<LineCredentials> {
        let key = keys::phone(id);
        let (mut p, version): (Phone, i64) =
            must_load_at(&self.store, &key, "phone", id, version).await?;
        let Some(line) = p.lines.get_mut(line_index as usize) else {
            return Err(ConfigError::invalid(
                "line_index",
                format!("phone has {} lines", p.lines.len()),
            ));
        };
        // Past every generation this user had on this phone, so no revoked password comes
        // back (a typed password is generation 0; an earlier life of the line may have
        // reached higher).
        let retired = p
            .retired_line_generations
            .get(&line.sip_user)
            .copied()
            .unwrap_or(0);
        let generation = line
            .credentials
            .as_ref()
            .map_or(0, |c| c.generation)
            .max(retired)
            + 1;
        let (password, stored) =
            line_credentials(&self.key, id, &line.sip_user, &self.realm, generation);
        line.credentials = Some(stored);
        let out = LineCredentials {
            line_index,
            sip_user: line.sip_user.clone(),
            realm: self.realm.clone(),
            password,
        };
        self.put_if_version(&mut p, version).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_proto::config::v1::{Line, PhoneSettings, SiteAssignment};

    fn base(meta: MetaBase) -> BaseSettings {
        BaseSettings {
            id: "b".into(),
            meta_base: meta as i32,
            ..Default::default()
        }
    }

    fn phone(kind: PhoneKind) -> Phone {
        Phone {
            name: "Front desk".into(),
            kind: kind as i32,
            site_id: "hq".into(),
            base_settings_id: "b".into(),
            hardware_id: "00:04:F2:AA:BB:CC".into(),
            lines: vec![Line {
                sip_user: "1001".into(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    use crate::error::invalid_field as field;

    #[test]
    fn valid_phone_is_normalised() {
        let mut p = phone(PhoneKind::Managed);
        validate_phone(&mut p, Some(&base(MetaBase::PolyVvx))).unwrap();
        assert_eq!(p.hardware_id, "0004f2aabbcc");
        assert!(matches!(
            p.assignment.unwrap().mode,
            Some(Mode::Unassigned(_))
        ));
    }

    #[test]
    fn invalid_phones_name_the_field() {
        let poly = base(MetaBase::PolyVvx);
        type Mutation = Box<dyn Fn(&mut Phone)>;
        let cases: Vec<(Mutation, Option<&BaseSettings>, &str)> = vec![
            (Box::new(|p| p.name.clear()), Some(&poly), "phone.name"),
            (Box::new(|p| p.kind = 0), Some(&poly), "phone.kind"),
            (
                Box::new(|p| p.hardware_id.clear()),
                Some(&poly),
                "phone.hardware_id",
            ),
            (
                Box::new(|p| p.hardware_id = "zz".into()),
                Some(&poly),
                "phone.hardware_id",
            ),
            (Box::new(|p| p.lines.clear()), Some(&poly), "phone.lines"),
            (
                Box::new(|p| p.remote_address = "sip:a@b".into()),
                Some(&poly),
                "phone.remote_address",
            ),
            (
                Box::new(|p| p.kind = PhoneKind::Webrtc as i32),
                Some(&poly),
                "phone.base_settings_id",
            ),
            (
                Box::new(|p| {
                    p.assignment = Some(Assignment {
                        mode: Some(Mode::Site(SiteAssignment {
                            extension: "1".into(),
                            ..Default::default()
                        })),
                    })
                }),
                Some(&poly),
                "phone.assignment.site.extension",
            ),
            (
                Box::new(|p| {
                    p.overrides = Some(PhoneSettings {
                        sip_dscp: Some(64),
                        ..Default::default()
                    })
                }),
                Some(&poly),
                "phone.overrides.sip_dscp",
            ),
        ];
        for (mutate, b, want) in cases {
            let mut p = phone(PhoneKind::Managed);
            mutate(&mut p);
            assert_eq!(field(validate_phone(&mut p, b)), want);
        }
        let mut remote = Phone {
            name: "Cell".into(),
            kind: PhoneKind::Remote as i32,
            site_id: "hq".into(),
            ..Default::default()
        };
        assert_eq!(
            field(validate_phone(&mut remote.clone(), None)),
            "phone.remote_address"
        );
        remote.remote_address = "+14155550100".into();
        validate_phone(&mut remote, None).unwrap();
    }

    /// "The admin may type the SIP password (or leave it generated)": a typed one is
    /// hashed (generation 0: provisioning cannot push it), never kept in clear, and checked.
    #[test]
    fn a_typed_line_password_is_hashed_and_never_kept() {
        let key = CredentialKey::new([3; 32]);
        // (typed, outcome: Ok(generation) or the field named)
        let cases: [(&str, Result<u32, &str>); 4] = [
            ("", Ok(1)),
            ("correct horse battery", Ok(0)),
            ("short", Err("phone.lines[0].password")),
            ("tab\there is long enough", Err("phone.lines[0].password")),
        ];
        for (typed, want) in cases {
            let mut p = phone(PhoneKind::Managed);
            p.id = "p-1".into();
            p.lines[0].password = typed.into();
            let got = complete_new_lines(&mut p, &[0], "k7q2x-", "dialtone", &key);
            match (got, want) {
                (Ok(creds), Ok(generation)) => {
                    let c = p.lines[0].credentials.as_ref().unwrap();
                    assert_eq!(c.generation, generation, "{typed:?}");
                    let shown = &creds[0].password;
                    if !typed.is_empty() {
                        assert_eq!(shown, typed);
                    }
                    assert_eq!(
                        c.ha1_md5,
                        credentials::ha1("k7q2x-1001", "dialtone", shown).ha1_md5
                    );
                    assert!(p.lines[0].password.is_empty(), "never stored");
                }
                (Err(e), Err(field)) => assert!(e.to_string().contains(field), "{e}"),
                (got, want) => panic!("{typed:?}: {got:?} but {want:?}"),
            }
        }
    }

    #[test]
    fn new_lines_get_prefix_and_hashed_password() {
        let mut p = phone(PhoneKind::Managed);
        p.lines.push(Line::default());
        p.id = "p-1".into();
        let key = CredentialKey::new([3; 32]);
        let creds = complete_new_lines(&mut p, &[0, 1], "k7q2x-", "dialtone", &key).unwrap();
        assert_eq!(p.lines[0].sip_user, "k7q2x-1001");
        assert!(p.lines[1].sip_user.starts_with("k7q2x-") && p.lines[1].sip_user.len() == 14);
        let c = p.lines[0].credentials.as_ref().unwrap();
        assert_eq!(
            c.ha1_md5,
            credentials::ha1("k7q2x-1001", "dialtone", &creds[0].password).ha1_md5
        );
        // The password is the derived one of generation 1, so provisioning can push it.
        assert_eq!(c.generation, 1);
        assert_eq!(creds[0].password, key.line_password("p-1", "k7q2x-1001", 1));
        assert_ne!(creds[0].password, creds[1].password);
        assert!(
            redact(p.clone())
                .lines
                .iter()
                .all(|l| l.credentials.is_none())
        );
        // A user the phone had before (its line reset to generation 4, then removed) comes
        // back with generation 5: the revoked passwords stay revoked.
        let mut again = p.clone();
        again.lines.truncate(1);
        again.lines[0] = Line {
            sip_user: "1001".into(),
            ..Default::default()
        };
        again
            .retired_line_generations
            .insert("k7q2x-1001".into(), 4);
        let creds = complete_new_lines(&mut again, &[0], "k7q2x-", "dialtone", &key).unwrap();
        assert_eq!(again.lines[0].credentials.as_ref().unwrap().generation, 5);
        assert_eq!(creds[0].password, key.line_password("p-1", "k7q2x-1001", 5));
        let mut dup = phone(PhoneKind::Managed);
        dup.lines.push(Line {
            sip_user: "1001".into(),
            ..Default::default()
        });
        assert!(complete_new_lines(&mut dup, &[0, 1], "x-", "r", &key).is_err());
        let mut bad = phone(PhoneKind::Managed);
        bad.lines[0].sip_user = "a b".into();
        assert!(complete_new_lines(&mut bad, &[0], "x-", "r", &key).is_err());
    }
}
