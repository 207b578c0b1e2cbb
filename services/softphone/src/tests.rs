use dialtone_proto::config::v1::SoftphoneAudio;

use super::*;

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn devices(inputs: &[&str], outputs: &[&str]) -> Devices {
    Devices {
        inputs: strings(inputs),
        outputs: strings(outputs),
    }
}

fn rules(use_headset: bool, auto_answer: bool, reject: bool, code: Option<u32>) -> Rules {
    Rules::from_settings(&SoftphoneAudio {
        use_headset: Some(use_headset),
        headset_name: strings(&["Jabra Evolve2 65", "Plantronics.*"]),
        audio_in_device: strings(&["Desk Mic"]),
        audio_out_device: strings(&["Desk Speaker"]),
        auto_answer: Some(auto_answer),
        reject_session_when_headset_na: Some(reject),
        sip_code_when_headset_na: code,
    })
    .unwrap()
}

/// (use_headset, auto_answer, reject_session_when_headset_na, headset plugged)
type Case = (bool, bool, bool, bool);
/// (input, output, headset_present, should_answer, incoming, outgoing allowed)
type Outcome = (
    &'static str,
    &'static str,
    bool,
    ShouldAnswer,
    Incoming,
    bool,
);
/// (inputs, outputs, selected input, selected output)
type DeviceCase = (
    &'static [&'static str],
    &'static [&'static str],
    Option<&'static str>,
    Option<&'static str>,
);

const BUILT_IN: (&str, &str) = ("Built-in Mic", "Built-in Speaker");

/// Every combination of use_headset, auto_answer, reject_session_when_headset_na and
/// headset presence, with the devices, the answer policy and whether calls may be placed.
#[test]
fn every_combination() {
    use Incoming::*;
    use ShouldAnswer::*;
    let with_headset = devices(
        &[BUILT_IN.0, "Desk Mic", "Jabra Evolve2 65"],
        &[BUILT_IN.1, "Desk Speaker", "Jabra Evolve2 65"],
    );
    let without = devices(&[BUILT_IN.0, "Desk Mic"], &[BUILT_IN.1, "Desk Speaker"]);
    // (use_headset, auto_answer, reject, headset plugged) ->
    //   (input, output, headset_present, should_answer, incoming, outgoing allowed)
    #[rustfmt::skip]
    let table: &[(Case, Outcome)] = &[
        // Without use_headset the headset list plays no part: the in/out lists choose.
        ((false, false, false, true),  ("Desk Mic", "Desk Speaker", false, Unknown, Ring, true)),
        ((false, false, false, false), ("Desk Mic", "Desk Speaker", false, Unknown, Ring, true)),
        ((false, false, true,  true),  ("Desk Mic", "Desk Speaker", false, Unknown, Ring, true)),
        ((false, false, true,  false), ("Desk Mic", "Desk Speaker", false, Unknown, Ring, true)),
        ((false, true,  false, true),  ("Desk Mic", "Desk Speaker", false, Yes, AutoAnswer, true)),
        ((false, true,  false, false), ("Desk Mic", "Desk Speaker", false, Yes, AutoAnswer, true)),
        ((false, true,  true,  true),  ("Desk Mic", "Desk Speaker", false, Yes, AutoAnswer, true)),
        ((false, true,  true,  false), ("Desk Mic", "Desk Speaker", false, Yes, AutoAnswer, true)),
        // With use_headset and the headset present, the headset is used.
        ((true,  false, false, true),  ("Jabra Evolve2 65", "Jabra Evolve2 65", true, Unknown, Ring, true)),
        ((true,  false, true,  true),  ("Jabra Evolve2 65", "Jabra Evolve2 65", true, Unknown, Ring, true)),
        ((true,  true,  false, true),  ("Jabra Evolve2 65", "Jabra Evolve2 65", true, Yes, AutoAnswer, true)),
        ((true,  true,  true,  true),  ("Jabra Evolve2 65", "Jabra Evolve2 65", true, Yes, AutoAnswer, true)),
        // Headset missing: the first listed devices; auto-answer blocked (unknown)...
        ((true,  false, false, false), (BUILT_IN.0, BUILT_IN.1, false, Unknown, Ring, true)),
        ((true,  true,  false, false), (BUILT_IN.0, BUILT_IN.1, false, Unknown, Ring, true)),
        // ...or, when the profile says so, calls rejected both ways.
        ((true,  false, true,  false), (BUILT_IN.0, BUILT_IN.1, false, No, Reject(486), false)),
        ((true,  true,  true,  false), (BUILT_IN.0, BUILT_IN.1, false, No, Reject(486), false)),
    ];
    assert_eq!(table.len(), 16);
    for &((use_headset, auto, reject, plugged), (input, output, present, answer, incoming, out)) in
        table
    {
        let r = rules(use_headset, auto, reject, Some(486));
        let d = if plugged { &with_headset } else { &without };
        let sel = r.select(d);
        let case = format!(
            "use_headset={use_headset} auto_answer={auto} reject={reject} plugged={plugged}"
        );
        assert_eq!(sel.input.as_deref(), Some(input), "{case}");
        assert_eq!(sel.output.as_deref(), Some(output), "{case}");
        assert_eq!(sel.headset_present, present, "{case}");
        assert_eq!(r.should_answer(&sel), answer, "{case}");
        assert_eq!(r.incoming(&sel), incoming, "{case}");
        assert_eq!(r.outgoing_allowed(&sel), out, "{case}");
    }
}

#[test]
fn rejection_code_defaults_to_480_when_missing_or_invalid() {
    let cases: &[(Option<u32>, u16)] = &[
        (None, 480),
        (Some(0), 480),
        (Some(399), 480),
        (Some(400), 400),
        (Some(486), 486),
        (Some(603), 603),
        (Some(699), 699),
        (Some(700), 480),
        (Some(u32::MAX), 480),
    ];
    for &(configured, want) in cases {
        let r = rules(true, false, true, configured);
        assert_eq!(r.reject_code(), want, "{configured:?}");
        assert_eq!(
            r.incoming(&r.select(&Devices::default())),
            Incoming::Reject(want)
        );
    }
}

#[test]
fn selection_follows_priority_then_system_order() {
    let r = Rules::from_settings(&SoftphoneAudio {
        use_headset: Some(false),
        audio_in_device: strings(&["USB Mic", "(?i)webcam"]),
        audio_out_device: strings(&["^HDMI", "Desk Speaker"]),
        ..Default::default()
    })
    .unwrap();
    // (inputs, outputs) -> (input, output)
    #[rustfmt::skip]
    let table: &[DeviceCase] = &[
        // Highest priority present wins, whatever the system's order.
        (&["Built-in", "WebCam C920", "USB Mic"], &["Desk Speaker", "HDMI 1"], Some("USB Mic"), Some("HDMI 1")),
        // The second entry when the first is absent; a regex matches a part of the name.
        (&["Built-in", "Logitech WEBCAM"], &["Built-in Out", "Desk Speaker"], Some("Logitech WEBCAM"), Some("Desk Speaker")),
        // Nothing configured is present: the first device the system lists.
        (&["Built-in", "Other"], &["Built-in Out", "Monitor HDMI"], Some("Built-in"), Some("Built-in Out")),
        // No devices at all.
        (&[], &[], None, None),
    ];
    for (inputs, outputs, want_in, want_out) in table {
        let sel = r.select(&devices(inputs, outputs));
        assert_eq!(sel.input.as_deref(), *want_in, "{inputs:?}");
        assert_eq!(sel.output.as_deref(), *want_out, "{outputs:?}");
        assert!(!sel.headset_present);
    }
}

#[test]
fn a_headset_must_be_both_microphone_and_speaker() {
    let r = rules(true, true, true, None);
    // Only the microphone side of the first headset: the second entry (a regex) wins.
    let sel = r.select(&devices(
        &["Jabra Evolve2 65", "Plantronics C320"],
        &["Speaker", "Plantronics C320"],
    ));
    assert!(sel.headset_present);
    assert_eq!(sel.input.as_deref(), Some("Plantronics C320"));
    assert_eq!(sel.output.as_deref(), Some("Plantronics C320"));
    // A microphone alone is not a headset.
    let sel = r.select(&devices(&["Jabra Evolve2 65"], &["Speaker"]));
    assert!(!sel.headset_present);
    assert_eq!(r.incoming(&sel), Incoming::Reject(480));
    // No headset entries at all: no headset can be present.
    let empty = Rules::from_settings(&SoftphoneAudio {
        use_headset: Some(true),
        reject_session_when_headset_na: Some(true),
        ..Default::default()
    })
    .unwrap();
    let sel = empty.select(&devices(&["Jabra Evolve2 65"], &["Jabra Evolve2 65"]));
    assert!(!sel.headset_present);
    assert!(!empty.outgoing_allowed(&sel));
}

#[test]
fn unset_settings_are_off() {
    let r = Rules::from_settings(&SoftphoneAudio::default()).unwrap();
    let sel = r.select(&devices(&["Mic"], &["Speaker"]));
    assert_eq!(r.should_answer(&sel), ShouldAnswer::Unknown);
    assert!(r.outgoing_allowed(&sel));
}

#[test]
fn a_broken_entry_is_named() {
    let err = Rules::from_settings(&SoftphoneAudio {
        audio_out_device: strings(&["ok", "(broken"]),
        ..Default::default()
    })
    .unwrap_err();
    let RulesError::Pattern { field, index, .. } = &err;
    assert_eq!((*field, *index), ("audio_out_device", 1));
    assert!(
        err.to_string().starts_with("audio_out_device[1]: "),
        "{err}"
    );
}

#[test]
fn device_changes_are_re_evaluated() {
    let mut s = AudioState::new(
        rules(true, true, true, Some(603)),
        devices(&[BUILT_IN.0], &[BUILT_IN.1]),
    );
    assert_eq!(s.incoming(), Incoming::Reject(603));
    assert!(!s.outgoing_allowed());
    // Half a headset changes nothing.
    assert!(s.plug("Plantronics D100", true).is_none());
    // The other half completes it.
    let sel = s.plug("Plantronics D100", false).cloned().unwrap();
    assert!(sel.headset_present);
    assert_eq!(sel.input.as_deref(), Some("Plantronics D100"));
    assert_eq!(s.incoming(), Incoming::AutoAnswer);
    assert!(s.outgoing_allowed());
    // The preferred headset arrives and takes over.
    s.plug("Jabra Evolve2 65", true);
    let sel = s.plug("Jabra Evolve2 65", false).cloned().unwrap();
    assert_eq!(sel.output.as_deref(), Some("Jabra Evolve2 65"));
    // Plugging it twice is no change.
    assert!(s.plug("Jabra Evolve2 65", false).is_none());
    // Unplugged: back to the other headset, then to the built-in devices and rejection.
    let sel = s.unplug("Jabra Evolve2 65").cloned().unwrap();
    assert_eq!(sel.input.as_deref(), Some("Plantronics D100"));
    let sel = s.unplug("Plantronics D100").cloned().unwrap();
    assert_eq!(sel.input.as_deref(), Some(BUILT_IN.0));
    assert!(!sel.headset_present);
    assert_eq!(s.incoming(), Incoming::Reject(603));
    assert_eq!(s.devices(), &devices(&[BUILT_IN.0], &[BUILT_IN.1]));
    assert_eq!(s.selection(), &sel);
}

/// "In cases where either of the following conditions is met, the auto-answer
/// functionality is blocked (a policy of should answer returns unknown, although a manual
/// answer is still possible)": the headset required and missing, or no usable microphone
/// or speaker. A fallback device (the first the system lists, when no configured one is
/// present) does not affect rejection: rejection follows the headset alone.
#[test]
fn auto_answer_needs_something_to_answer_with_and_fallbacks_do_not_affect_rejection() {
    use Incoming::*;
    use ShouldAnswer::*;
    type Row = (
        (bool, bool, bool),
        (&'static [&'static str], &'static [&'static str]),
        (ShouldAnswer, Incoming, bool),
    );
    // ((use_headset, auto_answer, reject), (inputs, outputs)) ->
    //   (should_answer, incoming, outgoing allowed)
    #[rustfmt::skip]
    let table: &[Row] = &[
        // use_headset=0, auto_answer=1: both devices, answered; either missing, blocked.
        ((false, true, false), (&["Desk Mic"], &["Desk Speaker"]), (Yes, AutoAnswer, true)),
        ((false, true, false), (&[], &["Desk Speaker"]), (Unknown, Ring, true)),
        ((false, true, false), (&["Desk Mic"], &[]), (Unknown, Ring, true)),
        ((false, true, false), (&[], &[]), (Unknown, Ring, true)),
        // Only unconfigured devices: the fallbacks are usable, so auto-answer goes on.
        ((false, true, false), (&["Other Mic"], &["Other Speaker"]), (Yes, AutoAnswer, true)),
        // Rejection needs use_headset: no devices at all without it only rings.
        ((false, true, true), (&[], &[]), (Unknown, Ring, true)),
        // use_headset=1, headset missing: fallback devices present or not, the same.
        ((true, true, true), (&["Other Mic"], &["Other Speaker"]), (No, Reject(480), false)),
        ((true, true, true), (&[], &[]), (No, Reject(480), false)),
        ((true, true, false), (&["Other Mic"], &["Other Speaker"]), (Unknown, Ring, true)),
        ((true, true, false), (&[], &[]), (Unknown, Ring, true)),
        // The headset there: answered.
        ((true, true, true), (&["Jabra Evolve2 65"], &["Jabra Evolve2 65"]), (Yes, AutoAnswer, true)),
    ];
    for &((use_headset, auto, reject), (inputs, outputs), (answer, incoming, out)) in table {
        let r = Rules::from_settings(&SoftphoneAudio {
            use_headset: Some(use_headset),
            headset_name: strings(&["Jabra"]),
            audio_in_device: strings(&["Desk Mic"]),
            audio_out_device: strings(&["Desk Speaker"]),
            auto_answer: Some(auto),
            reject_session_when_headset_na: Some(reject),
            sip_code_when_headset_na: None,
        })
        .unwrap();
        let sel = r.select(&devices(inputs, outputs));
        let case =
            format!("use_headset={use_headset} auto={auto} reject={reject} {inputs:?} {outputs:?}");
        assert_eq!(r.should_answer(&sel), answer, "{case}");
        assert_eq!(r.incoming(&sel), incoming, "{case}");
        assert_eq!(r.outgoing_allowed(&sel), out, "{case}");
    }
}
