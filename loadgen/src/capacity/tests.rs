//! Unit tests of [`super`] (capacity.rs).

use super::*;

fn scenario(capacity: &str) -> Result<Scenario, ScenarioError> {
    let text =
        format!("name = \"c\"\n[population]\nusers = 10\nmobiles_per_user = 2\n[capacity]\n{capacity}\n");
    Scenario::from_toml("c.toml", &text)
}

fn level(index: u32, offered: f64, verdict: Outcome) -> Level {
    Level {
        level: index,
        rate_per_mobile: offered / 10.0,
        users: 10,
        devices: 20,
        offered_commands_per_s: offered,
        achieved_commands_per_s: offered,
        sent: 0,
        delivered: 0,
        routing_p50_ms: 1.0,
        routing_p99_ms: 2.0,
        update_p99_ms: 1.0,
        connect_p99_ms: 3.0,
        lost: 0,
        errors: 0,
        send_lag_p99_ms: 1.0,
        duration_ms: 1000,
        verdict,
        breaches: Vec::new(),
        invalid_reasons: Vec::new(),
    }
}

#[test]
fn levels_multiply_or_add() {
    let s = scenario("mode = \"rate\"\nstart = 1\nfactor = 2\nmax_steps = 5\nstep_duration_s = 30").unwrap();
    let c = s.capacity.as_ref().unwrap();
    let rates: Vec<f64> = c.levels(&s).iter().map(|p| p.rate_per_mobile).collect();
    assert_eq!(rates, [1.0, 2.0, 4.0, 8.0, 16.0]);
    assert!(c.levels(&s).iter().all(|p| p.users == 10));
    let s = scenario(
        "mode = \"connections\"\nstart = 100\nstep = 50\nmax_steps = 3\nstep_duration_s = 5\nrate_per_mobile = 0.5",
    )
    .unwrap();
    let c = s.capacity.as_ref().unwrap();
    let plans = c.levels(&s);
    assert_eq!(plans.iter().map(|p| p.users).collect::<Vec<_>>(), [100, 150, 200]);
    assert!(plans.iter().all(|p| p.rate_per_mobile == 0.5));
    let one = level_scenario(&s, c, 2, plans[2]);
    assert_eq!(
        (one.population.users, one.population.mobiles_per_user, one.capacity.is_none()),
        (200, 2, true)
    );
    assert_eq!(one.phases.len(), 1);
    assert_eq!((one.phases[0].kind, one.phases[0].duration_s), (PhaseKind::Steady, 5.0));
    assert_eq!(one.load_duration_s(), 5.0);
}

#[test]
fn mistakes_name_the_capacity_key() {
    let key = |capacity: &str| match scenario(capacity) {
        Err(ScenarioError::Invalid { key, .. }) => key,
        other => panic!("{other:?}"),
    };
    let base = "mode = \"rate\"\nstart = 1\nmax_steps = 5\nstep_duration_s = 30";
    assert_eq!(key(base), "capacity", "neither factor nor step");
    assert_eq!(key(&format!("{base}\nfactor = 2\nstep = 1")), "capacity");
    assert_eq!(key(&format!("{base}\nfactor = 1")), "capacity.factor");
    assert_eq!(key(&format!("{base}\nstep = 0")), "capacity.step");
    assert_eq!(key(&format!("{base}\nfactor = 2\nrate_per_mobile = 1")), "capacity.rate_per_mobile");
    assert_eq!(
        key(&base.replace("max_steps = 5", "max_steps = 0").replace("30", "30\nstep = 1")),
        "capacity.max_steps"
    );
    assert_eq!(key(&base.replace("30", "0\nstep = 1")), "capacity.step_duration_s");
    let conn = "mode = \"connections\"\nstart = 1.5\nfactor = 2\nmax_steps = 5\nstep_duration_s = 30";
    assert_eq!(key(conn), "capacity.start");
    assert_eq!(key(&conn.replace("1.5", "2")), "capacity.rate_per_mobile");
    let text = "name = \"c\"\n[population]\nusers = 1\n[[phases]]\nname = \"s\"\nkind = \"steady\"\nduration_s = 1\nrate_per_mobile = 1\n[capacity]\nmode = \"rate\"\nstart = 1\nfactor = 2\nmax_steps = 2\nstep_duration_s = 1\n";
    let err = Scenario::from_toml("p.toml", text).unwrap_err().to_string();
    assert!(err.starts_with("p.toml: phases: "), "{err}");
    let err =
        Scenario::from_toml("p.toml", &text.replace("[capacity]", "[capacity]\nfactr = 3")).unwrap_err();
    assert!(err.to_string().contains("factr"), "{err}");
}

#[test]
fn the_knee_is_the_last_pass_before_the_first_failure() {
    use Outcome::{Fail, Invalid, Pass};
    let levels = [level(0, 10.0, Pass), level(1, 20.0, Pass), level(2, 40.0, Fail)];
    let (knee, stop, outcome) = conclude(&levels, 5, None, false);
    assert_eq!((knee.map(|k| k.level), stop, outcome), (Some(1), Stop::SloBreached, Pass));
    // A gate above the knee fails the search; at the knee it passes.
    assert_eq!(conclude(&levels, 5, Some(20.5), false).2, Fail);
    assert_eq!(conclude(&levels, 5, Some(20.0), false).2, Pass);
    // Not even the first level: no knee.
    let (knee, stop, outcome) = conclude(&levels[2..], 5, None, false);
    assert_eq!((knee, stop, outcome), (None, Stop::SloBreached, Fail));
    // Every level passed.
    let (knee, stop, outcome) = conclude(&levels[..2], 2, None, false);
    assert_eq!((knee.map(|k| k.level), stop, outcome), (Some(1), Stop::MaxSteps, Pass));
    // The generator was the bottleneck: the knee stands as a lower bound, the search is invalid.
    let levels = [level(0, 10.0, Pass), level(1, 20.0, Invalid)];
    let (knee, stop, outcome) = conclude(&levels, 5, None, false);
    assert_eq!((knee.map(|k| k.level), stop, outcome), (Some(0), Stop::Invalid, Invalid));
    // A level that could not run.
    let (knee, stop, outcome) = conclude(&levels[..1], 5, None, true);
    assert_eq!((knee.map(|k| k.level), stop, outcome), (Some(0), Stop::Error, Invalid));
}
