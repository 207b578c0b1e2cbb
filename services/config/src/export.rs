//! Phones as CSV (the import's columns), streamed in chunks of up to 1,000 phones, for
//! gRPC's ExportPhones and the console's download alike.

use std::collections::HashMap;

use dialtone_proto::config::v1::PhoneFilter;
use tokio::sync::mpsc;

use crate::{ConfigCore, csv_format, error::Result};

impl ConfigCore {
    /// Sends the phones `filter` selects as CSV chunks (the header first) to `out`, then
    /// ends; an error is sent as the last item. Stops when `out` is dropped.
    pub async fn export_csv(&self, filter: PhoneFilter, out: mpsc::Sender<Result<Vec<u8>>>) {
        let res: Result<()> = async {
            let mut prefixes = HashMap::new();
            let mut token = String::new();
            let mut chunk = csv_format::header();
            loop {
                let (phones, next) = self.list_phones(filter.clone(), 1000, &token).await?;
                for p in &phones {
                    if !prefixes.contains_key(&p.site_id) {
                        let prefix = self
                            .get_site(&p.site_id)
                            .await
                            .map(|s| s.sip_user_prefix)
                            .unwrap_or_default();
                        prefixes.insert(p.site_id.clone(), prefix);
                    }
                    chunk.extend(csv_format::row(p, &prefixes[&p.site_id]));
                }
                if out.send(Ok(std::mem::take(&mut chunk))).await.is_err() || next.is_empty() {
                    return Ok(());
                }
                token = next;
            }
        }
        .await;
        if let Err(e) = res {
            let _ = out.send(Err(e)).await;
        }
    }
}
