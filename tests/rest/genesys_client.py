"""A small client of Genesys Cloud's telephony API, written from its published shapes only
(the Platform API's /api/v2/telephony/providers/edges/phones and /phonebasesettings, the
Phone, PhoneBase, entity listing and ErrorBody models): list, create, get, update, delete
and reboot a phone; create a base settings profile from a meta-base's template, read,
update and delete it; read, create, update and delete sites. Run against Dialtone unchanged, it must
pass; every JSON answer it gets is also checked against the server's OpenAPI document
(/api/v2/openapi.json) with the `jsonschema` package.

Usage: python genesys_client.py BASE_URL ADMIN_TOKEN VIEWER_TOKEN SITE_ID BASE_SETTINGS_ID
Prints one line per check; exits non-zero at the first failure."""

import json
import re
import sys
import urllib.error
import urllib.request

import jsonschema

BASE, TOKEN, VIEWER, SITE, PROFILE = sys.argv[1:6]
PHONES = "/api/v2/telephony/providers/edges/phones"
DOC = None
CHECKED = []


def call(method, path, body=None, token=TOKEN, documented=True):
    """One request; returns (status, parsed JSON or None). Its answer is checked against
    the OpenAPI document unless the path is not `documented` (a wrong one)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    parsed = json.loads(raw) if raw else None
    if DOC is not None and documented:
        conform(method, path, status, parsed)
    return status, parsed


def conform(method, path, status, body):
    """The answer must match what the OpenAPI document says of this path, method and
    status."""
    bare = path.split("?")[0]
    for template, ops in DOC["paths"].items():
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
        if re.match(pattern, bare) and method.lower() in ops:
            # A literal path wins over a templated one (/phones/reboot, not /phones/{id}).
            if "{" in template and any(
                t == bare and method.lower() in o for t, o in DOC["paths"].items()
            ):
                continue
            responses = ops[method.lower()]["responses"]
            answer = responses.get(str(status))
            if answer is None:
                fail(f"{method} {path}: status {status} is not documented ({sorted(responses)})")
            content = answer.get("content", {}).get("application/json")
            if content is None:
                if body is not None:
                    fail(f"{method} {path}: {status} documented without a body, got {body}")
                CHECKED.append((method, template, status))
                return
            schema = dict(content["schema"], components=DOC["components"])
            try:
                jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)
            except jsonschema.ValidationError as e:
                fail(f"{method} {path} {status}: does not match the OpenAPI document: {e.message} at {list(e.absolute_path)}")
            CHECKED.append((method, template, status))
            return
    fail(f"{method} {path}: not in the OpenAPI document")


def fail(msg):
    print(f"FAIL {msg}")
    sys.exit(1)


def expect(what, cond, detail=""):
    if not cond:
        fail(f"{what} {detail}")
    print(f"ok   {what}")


def error_body(what, status, body, want):
    expect(what, status == want and body and body["status"] == want
           and isinstance(body["message"], str) and body["code"] and "contextId" in body,
           f"{status} {body}")


status, DOC = call("GET", "/api/v2/openapi.json", token=None)
expect("the OpenAPI document is served", status == 200 and DOC["openapi"].startswith("3.1"), status)
jsonschema.Draft202012Validator.check_schema({"components": DOC["components"]})

# Base settings and sites, as a script finds them before creating phones.
status, metas = call("GET", "/api/v2/telephony/providers/edges/phonebasesettings/availablemetabases")
expect("available meta-bases", status == 200 and any(m["id"] == "generic_sip" for m in metas["entities"]))
status, bases = call("GET", "/api/v2/telephony/providers/edges/phonebasesettings?pageSize=100")
base = next((b for b in bases["entities"] if b["id"] == PROFILE), None)
expect("the base settings listing", status == 200 and base and base["phoneMetaBase"]["id"], bases)
status, site = call("GET", f"/api/v2/telephony/providers/edges/sites/{SITE}")
expect("a site", status == 200 and site["id"] == SITE and site["name"], site)

# A base settings profile, as Genesys Cloud's docs create one: read the meta-base's
# template, post it with a name and the properties changed, read it, update it at its
# version, delete it.
BASES = "/api/v2/telephony/providers/edges/phonebasesettings"
status, tpl = call("GET", f"{BASES}/template?phoneMetabaseId=generic_sip")
expect("a meta-base's template", status == 200 and tpl["properties"]["phone_sip_dscp"]["value"]["instance"] == 24, tpl)
props = {k: {"value": {"instance": v["value"]["instance"]}} for k, v in tpl["properties"].items()}
props["phone_media_dscp"] = {"value": {"instance": 34}}
status, pb = call("POST", BASES, {"name": "REST Desks", "phoneMetaBase": {"id": "generic_sip"},
                                  "properties": props,
                                  "lines": [{"name": "REST Desks", "lineMetaBase": {"id": "generic_sip"}}]})
expect("create a profile from the template", status == 200 and pb["id"] and pb["version"] > 0
       and pb["properties"]["phone_media_dscp"]["value"]["instance"] == 34
       and pb["properties"]["phone_media_dscp"]["value"]["default"] == 46, (status, pb))
status, got = call("GET", f"{BASES}/{pb['id']}")
expect("read it back", status == 200 and got["properties"] == pb["properties"], got)
status, e = call("POST", BASES, {"name": "Bad", "phoneMetaBase": {"id": "generic_sip"},
                                 "properties": {"phone_sip_dscp": {"value": {"instance": 99}}}})
error_body("an out-of-range property", status, e, 400)
expect("the error names the property", e["messageParams"].get("field") == "properties.phone_sip_dscp", e)
status, e = call("POST", BASES, {"name": "Bad", "phoneMetaBase": {"id": "generic_sip"},
                                 "properties": {"phone_label": {"value": {"instance": "x"}}}})
error_body("an unknown property", status, e, 400)
status, up = call("PUT", f"{BASES}/{pb['id']}", {"name": "REST Desks 2", "version": pb["version"],
                                                  "phoneMetaBase": {"id": "generic_sip"},
                                                  "properties": {"phone_media_codecs": {"value": {"instance": ["audio/opus", "audio/PCMU"]}}}})
expect("update it at its version", status == 200 and up["name"] == "REST Desks 2"
       and up["properties"]["phone_media_codecs"]["value"]["instance"] == ["audio/opus", "audio/PCMU"]
       and up["properties"]["phone_media_dscp"]["value"]["instance"] == 34, (status, up))
status, e = call("PUT", f"{BASES}/{pb['id']}", {"name": "Late", "version": pb["version"],
                                                 "phoneMetaBase": {"id": "generic_sip"}})
error_body("an update at a stale version", status, e, 409)
status, e = call("DELETE", f"{BASES}/{pb['id']}", token=VIEWER)
error_body("a viewer token cannot delete a profile", status, e, 403)
status, e = call("DELETE", f"{BASES}/{pb['id']}")
expect("delete it", status == 204, (status, e))
status, e = call("GET", f"{BASES}/{pb['id']}")
error_body("it is gone", status, e, 404)

# Edge groups (Genesys Cloud's EdgeGroup, with Dialtone's `edges`): create, read,
# replace at its version, delete.
GROUPS = "/api/v2/telephony/providers/edges/edgegroups"
status, groups = call("GET", f"{GROUPS}?pageSize=100")
expect("the edge group listing", status == 200 and groups["total"] >= 1, groups)
status, g = call("POST", GROUPS, {"name": "REST Edges", "edges": [
    {"nodeId": "rest-edge-1", "addresses": {"udp": "127.0.0.1:25060", "tcp": "127.0.0.1:25060"}}]})
expect("create an edge group", status == 200 and g["id"] == "rest-edges" and g["edges"][0]["up"] is False, (status, g))
status, e = call("POST", GROUPS, {"name": "No Edges", "edges": []})
error_body("an edge group without edges", status, e, 400)
status, g2 = call("PUT", f"{GROUPS}/{g['id']}", dict(g, name="REST Edges 2"))
expect("replace it at its version", status == 200 and g2["name"] == "REST Edges 2" and g2["version"] > g["version"], (status, g2))
status, e = call("PUT", f"{GROUPS}/{g['id']}", dict(g, name="Late"))
error_body("a replace at a stale version", status, e, 409)
status, e = call("DELETE", f"{GROUPS}/{g['id']}")
expect("delete it", status == 204, (status, e))

# Sites: create one from a name, rename it at its version, delete it.
status, branch = call("POST", "/api/v2/telephony/providers/edges/sites",
                      {"name": "REST Branch", "edgeGroup": site.get("edgeGroup"),
                       "mediaRegions": ["eu-west"]})
expect("create a site", status == 200 and branch["id"] == "rest-branch"
       and branch["mediaRegions"] == ["eu-west"] and branch["version"] > 0, (status, branch))
status, e = call("POST", "/api/v2/telephony/providers/edges/sites", {"name": "Nope"}, token=VIEWER)
error_body("a viewer token cannot create a site", status, e, 403)
renamed = dict(branch, name="REST Branch Office")
status, written = call("PUT", f"/api/v2/telephony/providers/edges/sites/{branch['id']}", renamed)
expect("rename it", status == 200 and written["name"] == "REST Branch Office"
       and written["version"] > branch["version"], (status, written))
status, e = call("PUT", f"/api/v2/telephony/providers/edges/sites/{branch['id']}", renamed)
error_body("a site update at a stale version", status, e, 409)
status, e = call("DELETE", f"/api/v2/telephony/providers/edges/sites/{branch['id']}")
expect("delete it", status == 204, (status, e))

# Create, as Genesys Cloud's examples do: name, site, base settings, meta-base, a line.
new = {
    "name": "REST Lobby",
    "site": {"id": SITE},
    "phoneBaseSettings": {"id": PROFILE},
    "phoneMetaBase": {"id": base["phoneMetaBase"]["id"]},
    "lines": [{"properties": {"station_lineLabel": {"value": {"instance": "Lobby"}}}}],
    "properties": {"phone_hardwareId": {"value": {"instance": "00:04:F2:AA:BB:77"}}},
}
status, phone = call("POST", PHONES, new)
expect("create a phone", status == 200 and phone["id"] and phone["version"] > 0, (status, phone))
pid = phone["id"]
address = phone["lines"][0]["properties"]["station_identity_address"]["value"]["instance"]
expect("its line got an address and a password", address and phone["lines"][0].get("password"))
expect("its device credential, once", phone.get("deviceCredentials", {}).get("password")
       and phone["deviceCredentials"]["username"] == "0004f2aabb77", phone)
expect("its hardware id, normalised",
       phone["properties"]["phone_hardwareId"]["value"]["instance"] == "0004f2aabb77", phone)
status, again = call("POST", PHONES, new)
error_body("the same name again is a conflict", status, again, 409)
status, bad = call("POST", PHONES, dict(new, name="Other", phoneMetaBase={"id": "yealink" if base["phoneMetaBase"]["id"] != "yealink" else "poly_vvx"}))
error_body("a meta-base other than the profile's is refused", status, bad, 400)
expect("  naming the field", bad["messageParams"].get("field") == "phoneMetaBase.id", bad)

# Get and update with optimistic concurrency.
status, got = call("GET", f"{PHONES}/{pid}")
expect("get the phone", status == 200 and got["name"] == "REST Lobby" and got["site"]["id"] == SITE
       and "password" not in got["lines"][0], got)
got["name"] = "REST Front Desk"
status, updated = call("PUT", f"{PHONES}/{pid}", got)
expect("update it", status == 200 and updated["name"] == "REST Front Desk"
       and updated["version"] > got["version"], (status, updated))
expect("  its line and address kept",
       updated["lines"][0]["properties"]["station_identity_address"]["value"]["instance"] == address)
status, bare = call("PUT", f"{PHONES}/{pid}", {k: v for k, v in updated.items() if k != "version"})
error_body("an update without a version is refused", status, bare, 400)
status, stale = call("PUT", f"{PHONES}/{pid}", dict(got, name="Stale"))
error_body("an update at a stale version is a conflict", status, stale, 409)

# Lists: filters, paging, the envelope.
status, page = call("GET", f"{PHONES}?pageSize=1&pageNumber=1&site.id={SITE}&name=REST*")
expect("list with filters", status == 200 and page["total"] >= 1 and page["pageSize"] == 1
       and page["entities"][0]["id"] == pid and page["firstUri"] and page["selfUri"]
       and page["lastUri"], page)
status, none = call("GET", f"{PHONES}?name=Nobody")
expect("an exact name that no phone has", status == 200 and none["total"] == 0 and none["entities"] == [])
status, hw = call("GET", f"{PHONES}?phone_hardwareId=0004f2aabb77")
expect("by hardware id", status == 200 and [p["id"] for p in hw["entities"]] == [pid], hw)
status, expanded = call("GET", f"{PHONES}?expand=status&expand=lines&name=REST*")
expect("expand, repeated as the SDKs send it", status == 200
       and expanded["entities"][0]["status"]["operationalStatus"] == "OFFLINE", expanded)
status, bad = call("GET", f"{PHONES}?status.operationalStatus=UP")
error_body("an unknown status value is refused", status, bad, 400)
status, typo = call("GET", f"{PHONES}?siteId={SITE}")
error_body("a misspelt filter is refused, not ignored", status, typo, 400)

# Reboot: the phone never registered.
status, rb = call("POST", f"{PHONES}/{pid}/reboot")
error_body("reboot of a phone that is not registered", status, rb, 400)
status, rb = call("POST", f"{PHONES}/reboot", {"phoneIds": [pid]})
expect("bulk reboot by ids", status == 202 and rb is None, (status, rb))
status, rb = call("POST", f"{PHONES}/reboot", {})
error_body("bulk reboot without phones", status, rb, 400)

# Permissions: the same tokens as gRPC.
status, e = call("GET", PHONES, token=None)
error_body("no token", status, e, 401)
req = urllib.request.Request(BASE + PHONES, data=b"x" * 1000, method="POST")
try:
    urllib.request.urlopen(req, timeout=30)
    fail("a tokenless POST was served")
except urllib.error.HTTPError as err:
    expect("a tokenless POST is refused before its body, with WWW-Authenticate",
           err.code == 401 and err.headers.get("WWW-Authenticate", "").startswith("Bearer"))
status, e = call("GET", PHONES, token=VIEWER)
expect("a viewer token lists", status == 200, status)
status, e = call("DELETE", f"{PHONES}/{pid}", token=VIEWER)
error_body("a viewer token cannot delete", status, e, 403)

# Delete, then it is gone.
status, e = call("DELETE", f"{PHONES}/{pid}?version=1")
error_body("delete at a stale version", status, e, 409)
status, e = call("DELETE", f"{PHONES}/{pid}")
expect("delete it", status == 204 and e is None, (status, e))
status, e = call("GET", f"{PHONES}/{pid}")
error_body("it is gone", status, e, 404)
# Beyond Genesys Cloud: Dialtone's own resources under /api/v2/dialtone, checked against
# the same OpenAPI document.
OWN = "/api/v2/dialtone"
status, u = call("POST", f"{OWN}/users", {"id": "rest-alice", "name": "Alice", "siteId": SITE, "extension": "391"})
expect("create a user", status == 200 and u["version"] > 0 and u["extension"] == "391", (status, u))
status, e = call("POST", f"{OWN}/users", {"id": "rest-bob", "name": "Bob", "siteId": SITE, "extension": "391"})
error_body("an extension already taken", status, e, 409)
status, u2 = call("PUT", f"{OWN}/users/rest-alice", dict(u, name="Alice B."))
expect("replace a user at its version", status == 200 and u2["name"] == "Alice B.", (status, u2))
status, e = call("PUT", f"{OWN}/users/rest-alice", dict(u, name="Late"))
error_body("a user at a stale version", status, e, 409)
status, users = call("GET", f"{OWN}/users?pageSize=10")
expect("list users", status == 200 and any(x["id"] == "rest-alice" for x in users["entities"]), users)
status, e = call("DELETE", f"{OWN}/users/rest-alice")
expect("delete a user", status == 204, (status, e))
status, m = call("POST", f"{OWN}/mediaservers", {"id": "rest-rtp", "name": "RTP", "region": "eu-west", "ngAddress": "127.0.0.1:22222", "weight": 10})
expect("create a media server", status == 200 and m["weight"] == 10, (status, m))
status, e = call("POST", f"{OWN}/mediaservers", {"id": "rest-rtp-2", "name": "RTP", "region": "eu-west", "ngAddress": "nowhere"})
error_body("a media server with a bad ng address", status, e, 400)
status, e = call("DELETE", f"{OWN}/mediaservers/rest-rtp", token=VIEWER)
error_body("a viewer token cannot delete a media server", status, e, 403)
status, e = call("DELETE", f"{OWN}/mediaservers/rest-rtp")
expect("delete a media server", status == 204, (status, e))
status, trunks = call("GET", f"{OWN}/trunks")
expect("list trunks", status == 200 and "entities" in trunks, trunks)

status, e = call("GET", "/api/v2/telephony/providers/edges/nothing", documented=False)
error_body("an unknown resource", status, e, 404)

print(f"checked {len(CHECKED)} answers against the OpenAPI document")
