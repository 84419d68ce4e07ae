//! DDIM timestep lists against diffusers' definitions, evaluated with numpy 2 for these fixtures:
//! leading  `(arange(0, S) * (T // S)).round()[::-1]`,
//! trailing `round(arange(T, 0, -T / S)) - 1`,
//! linspace `linspace(0, T - 1, S).round()[::-1]`.

use ddpm_core::diffusion::{DdimConfig, DdimTimesteps, Plan, SamplerConfig, Spacing};

fn list(t: u32, s: u32, spacing: Spacing) -> Vec<u32> {
    DdimTimesteps::new(t, s, spacing).unwrap().iter().collect()
}

#[test]
fn t300_s10() {
    assert_eq!(
        list(300, 10, Spacing::Leading),
        [270, 240, 210, 180, 150, 120, 90, 60, 30, 0]
    );
    assert_eq!(
        list(300, 10, Spacing::Trailing),
        [299, 269, 239, 209, 179, 149, 119, 89, 59, 29]
    );
    assert_eq!(
        list(300, 10, Spacing::Linspace),
        [299, 266, 233, 199, 166, 133, 100, 66, 33, 0]
    );
}

#[test]
fn t300_s13() {
    assert_eq!(
        list(300, 13, Spacing::Leading),
        [276, 253, 230, 207, 184, 161, 138, 115, 92, 69, 46, 23, 0]
    );
    assert_eq!(
        list(300, 13, Spacing::Trailing),
        [299, 276, 253, 230, 207, 184, 161, 137, 114, 91, 68, 45, 22]
    );
    assert_eq!(
        list(300, 13, Spacing::Linspace),
        [299, 274, 249, 224, 199, 174, 150, 125, 100, 75, 50, 25, 0]
    );
}

#[test]
fn t300_s50() {
    let lead: Vec<u32> = (0..50).rev().map(|k| k * 6).collect();
    assert_eq!(list(300, 50, Spacing::Leading), lead);
    let trail: Vec<u32> = (0..50).map(|k| 299 - 6 * k).collect();
    assert_eq!(list(300, 50, Spacing::Trailing), trail);
    assert_eq!(
        list(300, 50, Spacing::Linspace),
        [
            299, 293, 287, 281, 275, 268, 262, 256, 250, 244, 238, 232, 226, 220, 214, 207, 201,
            195, 189, 183, 177, 171, 165, 159, 153, 146, 140, 134, 128, 122, 116, 110, 104, 98, 92,
            85, 79, 73, 67, 61, 55, 49, 43, 37, 31, 24, 18, 12, 6, 0
        ]
    );
}

#[test]
fn t1000_s7() {
    assert_eq!(
        list(1000, 7, Spacing::Leading),
        [852, 710, 568, 426, 284, 142, 0]
    );
    assert_eq!(
        list(1000, 7, Spacing::Trailing),
        [999, 856, 713, 570, 428, 285, 142]
    );
    assert_eq!(
        list(1000, 7, Spacing::Linspace),
        [999, 832, 666, 500, 333, 166, 0]
    );
}

#[test]
fn previous_timestep_comes_from_the_list() {
    // T = 300, S = 13 trailing: the stride is not constant (161 → 137 is 24, others 23), and the
    // previous timestep must follow the list, not t − T/S.
    let cfg = SamplerConfig::Ddim(DdimConfig {
        steps: 13,
        spacing: Spacing::Trailing,
        ..Default::default()
    });
    let plan = Plan::new(&cfg, 300).unwrap();
    assert_eq!(plan.step(6), Some((161, Some(137))));
    assert_eq!(plan.step(12), Some((22, None)));
    assert_eq!(plan.step(13), None);
    assert!(DdimTimesteps::new(300, 0, Spacing::Leading).is_err());
    assert!(DdimTimesteps::new(300, 301, Spacing::Leading).is_err());
    assert_eq!(
        list(300, 300, Spacing::Trailing),
        (0..300).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        list(300, 300, Spacing::Linspace),
        (0..300).rev().collect::<Vec<_>>()
    );
    assert_eq!(list(300, 1, Spacing::Linspace), [0]);
}
