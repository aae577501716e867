//! Features of the example event itself: raw fields, calendar and user-agent classes.

use rustc_hash::FxHashMap as HashMap;

use compact_str::CompactString;

use crate::config::{EventFeature, EventFeatureKind};
use crate::event::{Event, Value};
use crate::time::{day_of_week, hour_of_day};

/// Device class and bot flag of a user agent, parsed by `woothee`.
#[derive(Debug, Clone)]
pub struct UaClass {
    /// `pc`, `smartphone`, `mobilephone`, `crawler`, `appliance`, `misc` or `unknown`.
    pub device_class: CompactString,
    /// Whether woothee knows it as a crawler.
    pub is_bot: bool,
}

/// Computes event features, caching user-agent parses (agents repeat heavily).
#[derive(Default)]
pub struct EventFeatures {
    ua_cache: HashMap<CompactString, UaClass>,
    parser: woothee::parser::Parser,
}

impl EventFeatures {
    /// Classifies a user agent.
    pub fn classify(&mut self, ua: &str) -> UaClass {
        if let Some(c) = self.ua_cache.get(ua) {
            return c.clone();
        }
        let class = match self.parser.parse(ua) {
            Some(r) => UaClass {
                device_class: if r.category.is_empty() || r.category == "UNKNOWN" {
                    "unknown".into()
                } else {
                    r.category.into()
                },
                is_bot: r.category == "crawler",
            },
            None => UaClass {
                device_class: "unknown".into(),
                is_bot: false,
            },
        };
        if self.ua_cache.len() < 100_000 {
            self.ua_cache.insert(ua.into(), class.clone());
        }
        class
    }

    /// The event features of an example, in declaration order.
    pub fn compute(&mut self, specs: &[EventFeature], ev: &Event) -> Vec<Value> {
        // The device class and the bot flag usually read the same field: classify it once.
        let mut classified: Option<(usize, UaClass)> = None;
        let mut class_of = |this: &mut Self, ix: usize| -> Option<UaClass> {
            match &classified {
                Some((at, class)) if *at == ix => Some(class.clone()),
                _ => {
                    let class = this.classify(ev.fields[ix].as_str()?);
                    classified = Some((ix, class.clone()));
                    Some(class)
                }
            }
        };
        specs
            .iter()
            .map(|f| match f.kind {
                EventFeatureKind::Raw(ix) => ev.fields[ix].clone(),
                EventFeatureKind::HourOfDay => Value::Num(hour_of_day(ev.time) as f64),
                EventFeatureKind::DayOfWeek => Value::Num(day_of_week(ev.time) as f64),
                EventFeatureKind::DeviceClass(ix) => match class_of(self, ix) {
                    Some(class) => Value::Str(class.device_class),
                    None => Value::Missing,
                },
                EventFeatureKind::IsBot(ix) => match class_of(self, ix) {
                    Some(class) => Value::Num(if class.is_bot { 1.0 } else { 0.0 }),
                    None => Value::Missing,
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_classified() {
        let mut f = EventFeatures::default();
        let bot =
            f.classify("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
        assert!(bot.is_bot);
        let phone = f.classify("Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.0 Mobile/15E148 Safari/604.1");
        assert_eq!(phone.device_class, "smartphone");
        assert!(!phone.is_bot);
    }
}
