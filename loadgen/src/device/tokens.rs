//! A simulated device's tokens, refreshed before the access token expires (PROTOCOL.md CLI-8:
//! at 80% of its lifetime, then `reauth` on the open connection; CLI-9: each refresh token is
//! used once). Without this every device of a run longer than the access-token lifetime
//! (15 min on the reference relay) would be closed with `token_expired` and could not come back.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use relaykit_client::http;
use relaykit_protocol::rest::{RefreshRequest, TokenPair};
use tokio::time::{Duration, Instant};

/// Share of the access token's lifetime after which it is refreshed.
const REFRESH_AT: f64 = 0.8;

/// Wait before trying again when a refresh failed (the relay may be down for a moment).
const RETRY: Duration = Duration::from_secs(5);

/// The current token pair and when to refresh it.
#[derive(Debug, Clone)]
pub(super) struct Tokens {
    /// What `hello` and `reauth` carry.
    pub(super) access: String,
    refresh: String,
    /// On this process's clock.
    refresh_due: Instant,
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Tokens {
    pub(super) fn new(pair: &TokenPair) -> Tokens {
        // Remaining lifetime by this machine's clock (the relay's own clock is not known here;
        // on one machine, or with NTP, the two agree well within the 20% margin).
        let left = Duration::from_millis(pair.access_expires_at_ms.saturating_sub(unix_ms()));
        Tokens {
            access: pair.access_token.clone(),
            refresh: pair.refresh_token.clone(),
            refresh_due: Instant::now() + left.mul_f64(REFRESH_AT),
        }
    }

    /// When [`Tokens::refresh`] is due.
    pub(super) fn due(&self) -> Instant {
        self.refresh_due
    }

    /// Trades the refresh token for a new pair at `rest`; on failure tries again later and says
    /// why (the old pair stays: its refresh token was not spent unless the relay answered).
    pub(super) async fn refresh(&mut self, rest: SocketAddr) -> Result<(), String> {
        let body = serde_json::to_string(&RefreshRequest { refresh_token: self.refresh.clone() })
            .map_err(|e| e.to_string())?;
        let answer = http::request(
            rest,
            "POST",
            "/v1/tokens/refresh",
            &[],
            Some(body.as_bytes()),
            Duration::from_secs(10),
        )
        .await;
        let pair = match answer {
            Ok(r) if r.status == 200 => serde_json::from_str::<TokenPair>(&r.body).map_err(|e| e.to_string()),
            Ok(r) => Err(format!("refresh answered {}", r.status)),
            Err(e) => Err(e.to_string()),
        };
        match pair {
            Ok(pair) => {
                *self = Tokens::new(&pair);
                Ok(())
            }
            Err(e) => {
                self.refresh_due = Instant::now() + RETRY;
                Err(e)
            }
        }
    }
}
