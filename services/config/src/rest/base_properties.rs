//! A base settings profile's `properties`, in Genesys Cloud's property bag
//! (`{"phone_sip_dscp": {"value": {"instance": 24, "default": 24}}}`), and back. Settings
//! Genesys Cloud names take its names (`phone_media_dscp`, `phone_sip_dscp`,
//! `phone_media_codecs`, `phone_mwi_enabled`, `phone_standalone`); every other one is
//! `dialtone_` and its `PhoneSettings` field name. Pure.

use std::collections::BTreeMap;

use dialtone_proto::config::v1::PhoneSettings;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::errors::ApiError;

/// `(Genesys Cloud property, PhoneSettings field)` for the settings both know.
pub const GENESYS_NAMES: [(&str, &str); 5] = [
    ("phone_media_dscp", "media_dscp"),
    ("phone_sip_dscp", "sip_dscp"),
    ("phone_media_codecs", "codecs"),
    ("phone_mwi_enabled", "mwi_enabled"),
    ("phone_standalone", "standalone_features"),
];

/// The prefix of Dialtone's own properties.
pub const OWN_PREFIX: &str = "dialtone_";

/// One property.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Property {
    /// Its value.
    pub value: PropertyValue,
}

/// A property's value: what the profile sets, and (in answers) the meta-base's default.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PropertyValue {
    /// The value set.
    pub instance: Value,
    /// The meta-base template's value (in answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
}

/// The property a `PhoneSettings` field is shown as.
pub fn property_name(field: &str) -> String {
    GENESYS_NAMES
        .iter()
        .find(|(_, f)| *f == field)
        .map_or_else(|| format!("{OWN_PREFIX}{field}"), |(g, _)| (*g).to_owned())
}

/// The `PhoneSettings` field a property sets, when it names one.
pub fn field_name(property: &str) -> Option<String> {
    GENESYS_NAMES
        .iter()
        .find(|(g, _)| *g == property)
        .map(|(_, f)| (*f).to_owned())
        .or_else(|| property.strip_prefix(OWN_PREFIX).map(str::to_owned))
}

fn as_map(s: &PhoneSettings) -> Map<String, Value> {
    match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

/// The properties of `settings`, each with `defaults`' value (the meta-base template).
pub fn properties_out(
    settings: &PhoneSettings,
    defaults: &PhoneSettings,
) -> BTreeMap<String, Property> {
    let defaults = as_map(defaults);
    as_map(settings)
        .into_iter()
        .map(|(field, instance)| {
            let default = defaults.get(&field).cloned();
            (
                property_name(&field),
                Property {
                    value: PropertyValue { instance, default },
                },
            )
        })
        .collect()
}

/// `start` with `properties` set, or a 400 naming the property that cannot be.
pub fn properties_in(
    start: &PhoneSettings,
    properties: &BTreeMap<String, Property>,
) -> Result<PhoneSettings, ApiError> {
    let known = known_fields();
    let mut m = as_map(start);
    for (name, p) in properties {
        let field = field_name(name)
            .filter(|f| known.contains(f))
            .ok_or_else(|| {
                ApiError::bad_request(
                    &format!("properties.{name}"),
                    format!("unknown property '{name}'"),
                )
            })?;
        m.insert(field.clone(), p.value.instance.clone());
        // Each property is checked alone, so the error names the one that does not fit.
        let one: Map<String, Value> = [(field, p.value.instance.clone())].into_iter().collect();
        serde_json::from_value::<PhoneSettings>(Value::Object(one)).map_err(|e| {
            ApiError::bad_request(
                &format!("properties.{name}"),
                format!("property '{name}': {e}"),
            )
        })?;
    }
    serde_json::from_value(Value::Object(m)).map_err(|e| {
        ApiError::bad_request(
            "properties",
            format!("the properties do not fit together: {e}"),
        )
    })
}

/// The property a config error's field (`base_settings.settings.sip_dscp...`) is about.
pub fn property_of_error_field(field: &str) -> Option<String> {
    let rest = field
        .split_once(".settings.")
        .map(|(_, r)| r)
        .or_else(|| field.strip_prefix("settings."))?;
    let top = rest.split(['.', '[']).next()?;
    Some(format!("properties.{}", property_name(top)))
}

/// Every field a profile can set: the templates (`settings::template`) set every one but
/// `custom_properties`.
fn known_fields() -> std::collections::BTreeSet<String> {
    let mut known: std::collections::BTreeSet<String> = dialtone_domain::settings::META_BASES
        .iter()
        .flat_map(|m| {
            as_map(&dialtone_domain::settings::template(*m))
                .into_iter()
                .map(|(k, _)| k)
        })
        .collect();
    known.insert("custom_properties".into());
    known
}

#[cfg(test)]
mod tests {
    use super::*;
    use dialtone_domain::settings::template;
    use dialtone_proto::config::v1::MetaBase;

    fn prop(v: Value) -> Property {
        Property {
            value: PropertyValue {
                instance: v,
                default: None,
            },
        }
    }

    #[test]
    fn every_field_is_known() {
        // A new PhoneSettings field must be set by the templates to be writable here.
        let known = known_fields();
        for f in [
            "sip_dscp",
            "codecs",
            "softphone",
            "custom_properties",
            "firmware_url",
            "digest_algorithms",
            "e911_lis_url",
        ] {
            assert!(known.contains(f), "{f}: {known:?}");
        }
    }

    #[test]
    fn names_go_both_ways() {
        for (field, property) in [
            ("sip_dscp", "phone_sip_dscp"),
            ("codecs", "phone_media_codecs"),
            ("registration_period_s", "dialtone_registration_period_s"),
        ] {
            assert_eq!(property_name(field), property);
            assert_eq!(field_name(property).as_deref(), Some(field));
        }
        assert_eq!(field_name("phone_label"), None);
        assert_eq!(
            property_of_error_field("base_settings.settings.sip_dscp").as_deref(),
            Some("properties.phone_sip_dscp")
        );
        assert_eq!(
            property_of_error_field("base_settings.settings.custom_properties[0].name").as_deref(),
            Some("properties.dialtone_custom_properties")
        );
        assert_eq!(property_of_error_field("base_settings.name"), None);
    }

    #[test]
    fn a_template_goes_out_and_comes_back_unchanged() {
        let t = template(MetaBase::Yealink);
        let out = properties_out(&t, &t);
        assert_eq!(
            out["phone_media_dscp"].value.instance,
            out["phone_media_dscp"].value.default.clone().unwrap()
        );
        let back = properties_in(&PhoneSettings::default(), &out).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn properties_are_set_and_refused_by_name() {
        let t = template(MetaBase::GenericSip);
        let set: BTreeMap<String, Property> = [
            ("phone_sip_dscp".to_owned(), prop(Value::from(26))),
            (
                "dialtone_transport".to_owned(),
                prop(Value::from("TRANSPORT_TCP")),
            ),
        ]
        .into();
        let s = properties_in(&t, &set).unwrap();
        assert_eq!(s.sip_dscp, Some(26));
        assert_eq!(s.transport(), dialtone_proto::config::v1::Transport::Tcp);
        assert_eq!(s.codecs, t.codecs, "what is not given stays");
        let cases = [
            ("phone_label", Value::from("x"), "unknown property"),
            ("dialtone_nonsense", Value::from(1), "unknown property"),
            (
                "phone_sip_dscp",
                Value::from("high"),
                "property 'phone_sip_dscp'",
            ),
            (
                "phone_media_codecs",
                Value::from(3),
                "property 'phone_media_codecs'",
            ),
        ];
        for (name, v, why) in cases {
            let e = properties_in(&t, &[(name.to_owned(), prop(v))].into()).unwrap_err();
            assert_eq!(e.field(), Some(format!("properties.{name}").as_str()));
            assert!(e.message().contains(why), "{name}: {}", e.message());
        }
    }
}
