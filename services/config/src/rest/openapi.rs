//! The OpenAPI 3.1 document of the REST API, generated from the handlers' annotations and
//! the shapes' types (utoipa), served at `/api/v2/openapi.json` without a token.

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, ResponseBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::{
    base_properties, bases, catalog, edge_groups, errors, media, phones, reboot, shapes, trunks,
    users,
};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dialtone REST API",
        description = "Phones, sites and base settings, shaped after Genesys Cloud's telephony API (/api/v2/telephony/providers/edges). Bearer tokens and permissions as for gRPC: telephony:plugin:all, telephony:sitesmanagedphones:view|add|edit|delete."
    ),
    paths(
        phones::list,
        phones::create,
        phones::get,
        phones::replace,
        phones::delete,
        reboot::reboot,
        reboot::reboot_many,
        catalog::list_sites,
        catalog::get_site,
        catalog::create_site,
        catalog::replace_site,
        catalog::delete_site,
        edge_groups::list_groups,
        edge_groups::get_group,
        edge_groups::create_group,
        edge_groups::replace_group,
        edge_groups::delete_group,
        users::list_users,
        users::get_user,
        users::create_user,
        users::replace_user,
        users::delete_user,
        media::list_media,
        media::get_media,
        media::create_media,
        media::replace_media,
        media::delete_media,
        trunks::list_trunks,
        trunks::get_trunk,
        bases::list_bases,
        bases::get_base,
        bases::create_base,
        bases::replace_base,
        bases::delete_base,
        bases::base_template,
        bases::meta_bases,
    ),
    components(schemas(
        shapes::Phone,
        shapes::Line,
        shapes::EntityRef,
        shapes::TextProperty,
        shapes::TextValue,
        shapes::PhoneProperties,
        shapes::PhoneAssignment,
        shapes::LineProperties,
        shapes::PhoneStatus,
        shapes::DeviceCredentials,
        shapes::LineStatus,
        shapes::Site,
        shapes::PhoneBase,
        errors::ErrorBody,
        reboot::PhonesReboot,
        bases::MetaBaseListing,
        edge_groups::EdgeGroup,
        users::User,
        media::MediaServer,
        trunks::Trunk,
        trunks::TrunkTarget,
        edge_groups::EdgeMember,
        edge_groups::SipAddresses,
        base_properties::Property,
        base_properties::PropertyValue,
    )),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    /// The bearer scheme, and the answers every operation that takes a token may give.
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ]
            .into_iter()
            .flatten()
            {
                if op.security.is_none() {
                    continue;
                }
                for (code, what) in [
                    ("401", "No bearer token, or an unknown one"),
                    ("403", "The token lacks the permission this operation needs"),
                    ("503", "The store cannot be reached"),
                ] {
                    op.responses
                        .responses
                        .entry(code.to_owned())
                        .or_insert_with(|| error(what).into());
                }
            }
        }
    }
}

/// `GET /api/v2/openapi.json`.
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
