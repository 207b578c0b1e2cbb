//! Genesys Cloud's numbered pages (`pageNumber`, `pageSize`, `total`, `firstUri` ...) over a
//! sorted list, and the query parameters of a list request. Pure.

use std::collections::BTreeMap;

use super::errors::ApiError;

/// Entities per page when the request does not say.
pub const DEFAULT_PAGE_SIZE: u32 = 25;
/// The most entities a page holds.
pub const MAX_PAGE_SIZE: u32 = 500;

/// Parameters a request may repeat (Genesys Cloud's SDKs send `expand=a&expand=b`).
const REPEATABLE: [&str; 1] = ["expand"];

/// A list request's query: its parameters, each known to the resource, once (but the
/// repeatable ones, whose values are joined with commas).
#[derive(Clone, Debug, Default)]
pub struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    /// The query string `raw` (already split into pairs), refusing a parameter the resource
    /// does not know (`known`) and one given twice: a misspelt filter must not silently
    /// list everything.
    pub fn parse(raw: &[(String, String)], known: &[&str]) -> Result<Self, ApiError> {
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in raw {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::bad_request(
                    k,
                    format!(
                        "unknown query parameter '{k}'; this resource takes {}",
                        known.join(", ")
                    ),
                ));
            }
            match params.get_mut(k) {
                Some(had) if REPEATABLE.contains(&k.as_str()) => {
                    had.push(',');
                    had.push_str(v);
                }
                Some(_) => return Err(ApiError::bad_request(k, format!("'{k}' is given twice"))),
                None => {
                    params.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Query { params })
    }

    /// A parameter's value, when given and not empty.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.params
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Every comma-separated value of a parameter.
    pub fn all(&self, k: &str) -> impl Iterator<Item = &str> {
        self.get(k).into_iter().flat_map(|v| v.split(','))
    }

    /// A number parameter within `lo..=hi`, `default` when absent.
    pub fn number(&self, k: &str, default: u32, (lo, hi): (u32, u32)) -> Result<u32, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(default);
        };
        v.parse::<u32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(k, format!("'{k}' must be a number from {lo} to {hi}"))
            })
    }

    /// One of `allowed` (case-insensitive), `default` when absent.
    pub fn choice<'a>(
        &self,
        k: &str,
        default: &'a str,
        allowed: &[&'a str],
    ) -> Result<&'a str, ApiError> {
        let Some(v) = self.get(k) else {
            return Ok(default);
        };
        allowed
            .iter()
            .find(|a| a.eq_ignore_ascii_case(v))
            .copied()
            .ok_or_else(|| {
                ApiError::bad_request(k, format!("'{k}' must be one of {}", allowed.join(", ")))
            })
    }

    /// The query string without paging, for the page links.
    fn others(&self) -> String {
        self.params
            .iter()
            .filter(|(k, _)| *k != "pageNumber" && *k != "pageSize")
            .map(|(k, v)| format!("&{}={}", escape(k), escape(v)))
            .collect()
    }
}

/// Percent-encodes what a query value may not hold as is.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~*".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The most entities one list request reads (it reads them all to sort and count them):
/// beyond, the request is refused and asks for a filter.
pub const MAX_LISTED: usize = 50_000;

/// Every entity of a cursor listing (`page(token)` gives one page and the next token),
/// refused with a 400 naming `what` once more than [`MAX_LISTED`] were read.
pub async fn read_all<T, F, Fut>(what: &str, mut page: F) -> Result<Vec<T>, ApiError>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = crate::error::Result<(Vec<T>, String)>>,
{
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (items, next) = page(token).await?;
        out.extend(items);
        if out.len() > MAX_LISTED {
            return Err(ApiError::bad_request(
                "site.id",
                format!(
                    "more than {MAX_LISTED} {what} match; narrow the list with site.id, phoneBaseSettings.id or name"
                ),
            ));
        }
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

/// Whether the query's page (`pageSize`, `pageNumber`) is one [`page`] takes.
pub fn check(q: &Query) -> Result<(), ApiError> {
    q.number("pageSize", DEFAULT_PAGE_SIZE, (1, MAX_PAGE_SIZE))?;
    q.number("pageNumber", 1, (1, u32::MAX))?;
    Ok(())
}

/// One page of `all` (already filtered and sorted) at `base` (the resource's path) with
/// the page links Genesys Cloud gives.
pub fn page<T>(all: Vec<T>, base: &str, q: &Query) -> Result<super::shapes::Listing<T>, ApiError> {
    let (start, size) = window(q)?;
    let total = all.len() as u64;
    let entities: Vec<T> = all
        .into_iter()
        .skip(usize::try_from(start).unwrap_or(usize::MAX))
        .take(size)
        .collect();
    listing(entities, total, base, q)
}

/// The page a query asks for: how many entities come before it, and its size.
pub fn window(q: &Query) -> Result<(u64, usize), ApiError> {
    let size = q.number("pageSize", DEFAULT_PAGE_SIZE, (1, MAX_PAGE_SIZE))?;
    let number = q.number("pageNumber", 1, (1, u32::MAX))?;
    Ok((
        (u64::from(number) - 1).saturating_mul(u64::from(size)),
        size as usize,
    ))
}

/// The page `entities` (already cut by [`window`]) of `total` entities, with its links.
pub fn listing<T>(
    entities: Vec<T>,
    total: u64,
    base: &str,
    q: &Query,
) -> Result<super::shapes::Listing<T>, ApiError> {
    let size = q.number("pageSize", DEFAULT_PAGE_SIZE, (1, MAX_PAGE_SIZE))?;
    let number = q.number("pageNumber", 1, (1, u32::MAX))?;
    let count = total.div_ceil(u64::from(size)).max(1) as u32;
    let others = q.others();
    let uri = |n: u32| format!("{base}?pageSize={size}&pageNumber={n}{others}");
    Ok(super::shapes::Listing {
        entities,
        page_size: size,
        page_number: number,
        total,
        page_count: count,
        first_uri: uri(1),
        self_uri: uri(number),
        next_uri: (number < count).then(|| uri(number + 1)),
        previous_uri: (number > 1).then(|| uri((number - 1).min(count))),
        last_uri: uri(count),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Query {
        let raw: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Query::parse(&raw, &["pageSize", "pageNumber", "name", "site.id"]).expect("parses")
    }

    #[test]
    fn pages_are_numbered_from_one_with_genesys_links() {
        let all: Vec<u32> = (0..53).collect();
        let cases = [
            // (pageSize, pageNumber, entities, next, previous, pageCount)
            ("25", "1", 0..25, true, false, 3),
            ("25", "3", 50..53, false, true, 3),
            ("25", "4", 0..0, false, true, 3),
            ("100", "1", 0..53, false, false, 1),
        ];
        for (size, number, want, next, prev, count) in cases {
            let p = page(
                all.clone(),
                "/x",
                &q(&[("pageSize", size), ("pageNumber", number)]),
            )
            .expect("a page");
            assert_eq!(p.entities, want.collect::<Vec<_>>(), "{size} {number}");
            assert_eq!(
                (p.next_uri.is_some(), p.previous_uri.is_some(), p.page_count),
                (next, prev, count)
            );
            assert_eq!(p.total, 53);
        }
        let p = page(all, "/x", &q(&[("name", "a b"), ("site.id", "hq")])).expect("a page");
        assert_eq!(
            p.first_uri,
            "/x?pageSize=25&pageNumber=1&name=a%20b&site.id=hq"
        );
        assert_eq!(
            p.next_uri.as_deref(),
            Some("/x?pageSize=25&pageNumber=2&name=a%20b&site.id=hq")
        );
        assert_eq!(
            p.last_uri,
            "/x?pageSize=25&pageNumber=3&name=a%20b&site.id=hq"
        );
        let empty = page(Vec::<u32>::new(), "/x", &q(&[])).expect("a page");
        assert_eq!(
            (empty.total, empty.page_count, empty.next_uri),
            (0, 1, None)
        );
    }

    #[test]
    fn bad_queries_are_refused_by_name() {
        let raw = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        let known = ["pageSize", "pageNumber"];
        let e = Query::parse(&raw("pagesize", "10"), &known).expect_err("unknown");
        assert_eq!(e.status(), 400);
        let twice = [raw("pageSize", "1"), raw("pageSize", "2")].concat();
        assert!(Query::parse(&twice, &known).is_err());
        let expands = [raw("expand", "status"), raw("expand", "lines")].concat();
        let q = Query::parse(&expands, &["expand"]).expect("expand repeats");
        assert_eq!(q.all("expand").collect::<Vec<_>>(), ["status", "lines"]);
        assert!(check(&Query::parse(&raw("pageNumber", "0"), &known).expect("known")).is_err());
        for (k, v) in [("pageSize", "0"), ("pageSize", "501"), ("pageNumber", "x")] {
            let query = Query::parse(&raw(k, v), &known).expect("known");
            assert!(page(vec![1], "/x", &query).is_err(), "{k}={v}");
        }
        let sort = Query::parse(&raw("pageSize", "5"), &known).expect("known");
        assert_eq!(
            sort.choice("sortOrder", "ASC", &["ASC", "DESC"]).ok(),
            Some("ASC")
        );
    }
}
