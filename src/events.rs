//! The daemon's event stream (`GET /events`): what happened to networks and
//! containers, in dockerd's JSON shape, kept in a bounded history for `since`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// How many past events `since` can reach back to (dockerd keeps 256).
const HISTORY: usize = 256;

/// One event, as `docker events --format '{{json .}}'` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Event {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: &'static str,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    // Pre-1.22 fields that dockerd still sends for containers.
    #[serde(rename = "status", skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(rename = "id", skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "from", skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Publishes events to every `/events` listener and keeps recent history.
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus {
            tx: broadcast::channel(1024).0,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }
}

impl EventBus {
    /// A network event: `create`, `destroy`, `connect`, `disconnect`.
    pub fn network(
        &self,
        action: &str,
        id: &str,
        name: &str,
        driver: &str,
        container: Option<&str>,
    ) {
        let mut attributes = BTreeMap::from([
            ("name".to_string(), name.to_string()),
            ("type".to_string(), driver.to_string()),
        ]);
        if let Some(c) = container {
            attributes.insert("container".into(), c.to_string());
        }
        self.publish(Event::new("network", action, id, attributes));
    }

    /// A container event (`create`, `start`, `die`, `stop`, `kill`, `destroy`, ...).
    /// `attributes` carries at least `name` and `image`, as dockerd's do.
    pub fn container(&self, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        let mut e = Event::new("container", action, id, attributes);
        e.status = Some(action.to_string());
        e.id = Some(id.to_string());
        e.from = e.actor.attributes.get("image").cloned();
        self.publish(e);
    }

    /// An image event (`import`, `load`, `tag`, `untag`, `delete`).
    pub fn image(&self, action: &str, id: &str, name: &str) {
        let attributes = BTreeMap::from([("name".to_string(), name.to_string())]);
        self.publish(Event::new("image", action, id, attributes));
    }

    fn publish(&self, event: Event) {
        {
            let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
            if h.len() == HISTORY {
                h.pop_front();
            }
            h.push_back(event.clone());
        }
        // No listener is fine.
        let _ = self.tx.send(event);
    }

    /// Past events (oldest first) and a receiver for what comes next,
    /// taken together so nothing falls between them.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        (h.iter().cloned().collect(), self.tx.subscribe())
    }
}

impl Event {
    fn new(
        kind: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) -> Event {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        Event {
            kind,
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local",
            time: now.timestamp(),
            time_nano: nanos,
            status: None,
            id: None,
            from: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_event_has_dockerds_shape() {
        let bus = EventBus::default();
        bus.network("connect", "n1", "mynet", "bridge", Some("c1"));
        let (past, _) = bus.subscribe();
        let v = serde_json::to_value(&past[0]).unwrap();
        assert_eq!(v["Type"], "network");
        assert_eq!(v["Action"], "connect");
        assert_eq!(v["Actor"]["ID"], "n1");
        assert_eq!(v["Actor"]["Attributes"]["container"], "c1");
        assert_eq!(v["Actor"]["Attributes"]["name"], "mynet");
        assert_eq!(v["Actor"]["Attributes"]["type"], "bridge");
        assert_eq!(v["scope"], "local");
        assert!(v.get("status").is_none());
    }

    #[test]
    fn history_is_bounded() {
        let bus = EventBus::default();
        for i in 0..(HISTORY + 10) {
            bus.image("tag", &i.to_string(), "x");
        }
        let (past, _) = bus.subscribe();
        assert_eq!(past.len(), HISTORY);
        assert_eq!(past[0].actor.id, "10");
    }
}
