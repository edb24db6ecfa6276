//! When each device goes away: the scenario's offline steps and churn, chosen by the seed per
//! device index (so a shard simulates exactly what the whole run would for its devices).

use relaykit_protocol::DeviceType;

use crate::scenario::Scenario;

/// Offline windows of desktop `index`, in load seconds: `(start, end, abrupt)`, by start.
pub(super) fn offline_windows(
    scenario: &Scenario,
    role: DeviceType,
    index: u64,
) -> std::collections::VecDeque<(f64, f64, bool)> {
    // Phones and desktops draw from different streams of the seed.
    let salt = if role == DeviceType::Mobile { 0x6D6F_6269_6C65 } else { 0 };
    let mut w: Vec<(f64, f64, bool)> = scenario
        .offline
        .iter()
        .enumerate()
        .filter(|(_, o)| o.role == role)
        .filter(|(i, o)| crate::run::pick(scenario.seed ^ salt ^ (*i as u64 + 1), index) < o.fraction)
        .map(|(_, o)| (o.at_s, o.at_s + o.duration_s, o.abrupt))
        .collect();
    if let Some(churn) = scenario.churn.as_ref().filter(|c| c.role == role) {
        let minutes = (scenario.load_duration_s() / 60.0).ceil() as u64;
        for m in 0..minutes {
            let salt = salt ^ scenario.seed.rotate_left(17) ^ (m + 1).wrapping_mul(0xA24B_AED4_963E_E407);
            if crate::run::pick(salt, index) < churn.per_minute {
                let at = m as f64 * 60.0 + crate::run::pick(salt ^ 0x5851_F42D, index) * 60.0;
                if at < scenario.load_duration_s() {
                    w.push((at, at, churn.abrupt));
                }
            }
        }
    }
    w.sort_by(|a, b| a.0.total_cmp(&b.0));
    w.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenario(extra: &str) -> Scenario {
        let text = format!(
            "name = \"t\"\n[population]\nusers = 1\n[[phases]]\nname = \"s\"\nkind = \"steady\"\nduration_s = 120\nrate_per_mobile = 1\n{extra}"
        );
        Scenario::from_toml("t.toml", &text).unwrap()
    }

    #[test]
    fn offline_steps_pick_their_share_of_desktops() {
        let s = scenario("[[offline]]\nat_s = 10\nduration_s = 2\nfraction = 0.25\n");
        let picked = (0..2000).filter(|d| !offline_windows(&s, DeviceType::Desktop, *d).is_empty()).count();
        assert!((400..600).contains(&picked), "{picked} of 2000 for 25%");
        let w =
            (0..2000).map(|d| offline_windows(&s, DeviceType::Desktop, d)).find(|w| !w.is_empty()).unwrap();
        assert_eq!(w[0], (10.0, 12.0, true));
    }

    #[test]
    fn churn_drops_about_its_share_per_minute() {
        let s = scenario("[churn]\nper_minute = 0.1\nabrupt = false\n");
        let windows: Vec<_> = (0..1000).flat_map(|d| offline_windows(&s, DeviceType::Desktop, d)).collect();
        // 2 minutes x 1000 desktops x 10%: about 200 drops, each a storm-like 0 s window.
        assert!((150..250).contains(&windows.len()), "{}", windows.len());
        assert!(windows.iter().all(|(a, b, abrupt)| a == b && !abrupt && (0.0..120.0).contains(a)));
        assert_eq!(offline_windows(&s, DeviceType::Desktop, 7), offline_windows(&s, DeviceType::Desktop, 7));
        assert!(
            (0..1000).all(|d| offline_windows(&s, DeviceType::Mobile, d).is_empty()),
            "churn is per role"
        );
    }
}
