//! A softphone's live audio state: the rules re-evaluated on every device change.

use crate::{Devices, Incoming, Rules, Selection};

/// The rules plus the devices listed now and what was selected for them.
#[derive(Debug, Clone)]
pub struct AudioState {
    rules: Rules,
    devices: Devices,
    selection: Selection,
}

impl AudioState {
    /// Starts with the devices listed at start-up.
    pub fn new(rules: Rules, devices: Devices) -> Self {
        let selection = rules.select(&devices);
        Self {
            rules,
            devices,
            selection,
        }
    }

    /// Applies a change of the listed devices (plugged or unplugged) and returns the new
    /// selection when it differs from the previous one.
    pub fn devices_changed(&mut self, devices: Devices) -> Option<&Selection> {
        let selection = self.rules.select(&devices);
        self.devices = devices;
        if selection == self.selection {
            return None;
        }
        self.selection = selection;
        Some(&self.selection)
    }

    /// A device appeared (`input`: a microphone, else a speaker); listed last, as systems do.
    pub fn plug(&mut self, name: &str, input: bool) -> Option<&Selection> {
        let mut d = self.devices.clone();
        let list = if input { &mut d.inputs } else { &mut d.outputs };
        if !list.iter().any(|x| x == name) {
            list.push(name.to_owned());
        }
        self.devices_changed(d)
    }

    /// A device disappeared from both lists.
    pub fn unplug(&mut self, name: &str) -> Option<&Selection> {
        let mut d = self.devices.clone();
        d.inputs.retain(|x| x != name);
        d.outputs.retain(|x| x != name);
        self.devices_changed(d)
    }

    /// The devices in use.
    pub fn selection(&self) -> &Selection {
        &self.selection
    }

    /// The devices listed now.
    pub fn devices(&self) -> &Devices {
        &self.devices
    }

    /// What to do with an incoming call now.
    pub fn incoming(&self) -> Incoming {
        self.rules.incoming(&self.selection)
    }

    /// Whether the user may place a call now.
    pub fn outgoing_allowed(&self) -> bool {
        self.rules.outgoing_allowed(&self.selection)
    }
}
