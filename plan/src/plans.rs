//! What `capsule plan` prints and `capsule run --plan` reads: one Plan, or a group of them
//! with its launch order.
//!
//! The three shapes are told apart by their JSON alone, so a saved file runs as the script
//! that made it would:
//!
//! - one Plan: the Plan's object, `{"isolation": ..., ...}`;
//! - Plans launched together: an array of Plans, `[{...}, {...}]`;
//! - Plans launched one after another (`in_order([...])`): `{"inOrder": [{...}, {...}]}`.
//!
//! `inOrder` holds the array itself, as the script's `in_order([...])` does, rather than a
//! flag beside a `plans` array: one shape per meaning, and the order cannot be dropped from
//! the file while its Plans are kept.

use serde::{Deserialize, Serialize};

use crate::{Error, Plan};

/// One Plan or a group: a launch as a script describes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Plans {
    /// A single launch.
    One(Box<Plan>),
    /// Launched at once; the exit status is the first non-zero one, in this order.
    Together(Vec<Plan>),
    /// Launched one after another, stopping at the first that fails.
    InOrder(Vec<Plan>),
}

/// The JSON object of an in-order group.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InOrderJson<P> {
    in_order: P,
}

impl Plans {
    /// A script's Plans: a single Plan is one launch whatever the group, since the order of
    /// one Plan means nothing (and `capsule run` launches it in-process).
    pub fn new(mut plans: Vec<Plan>, sequential: bool) -> Self {
        match (plans.len(), sequential) {
            (1, _) => Plans::One(Box::new(plans.remove(0))),
            (_, false) => Plans::Together(plans),
            (_, true) => Plans::InOrder(plans),
        }
    }

    /// The Plans, in launch order.
    pub fn plans(&self) -> &[Plan] {
        match self {
            Plans::One(plan) => std::slice::from_ref(plan.as_ref()),
            Plans::Together(plans) | Plans::InOrder(plans) => plans,
        }
    }

    /// Whether the Plans launch one after another rather than together.
    pub fn sequential(&self) -> bool {
        matches!(self, Plans::InOrder(_))
    }

    /// Pretty JSON ending in a newline; fields in the Plan's declaration order, so the same
    /// Plans give the same bytes.
    pub fn to_json(&self) -> String {
        let json = match self {
            Plans::One(plan) => serde_json::to_string_pretty(plan),
            Plans::Together(plans) => serde_json::to_string_pretty(plans),
            Plans::InOrder(plans) => serde_json::to_string_pretty(&InOrderJson { in_order: plans }),
        };
        json.expect("a Plan serialises: its maps have string keys") + "\n"
    }

    /// Reads any of the three shapes. The shape is picked first and the text then parsed as
    /// that shape, so an error names the line and column of the field at fault rather than
    /// saying that no shape matched.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let json = |what| move |source| Error::PlansJson { what, source };
        let value: serde_json::Value = serde_json::from_str(text).map_err(json(""))?;
        let plans = match &value {
            serde_json::Value::Array(_) => {
                Plans::Together(serde_json::from_str(text).map_err(json(""))?)
            }
            serde_json::Value::Object(fields) if fields.contains_key("inOrder") => {
                let group: InOrderJson<Vec<Plan>> =
                    serde_json::from_str(text).map_err(json("in-order group: "))?;
                Plans::InOrder(group.in_order)
            }
            serde_json::Value::Object(_) => {
                Plans::One(Box::new(serde_json::from_str(text).map_err(json(""))?))
            }
            _ => return Err(Error::PlansShape),
        };
        if plans.plans().is_empty() {
            return Err(Error::EmptyGroup);
        }
        Ok(plans)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(name: &str) -> Plan {
        let mut plan: Plan = serde_json::from_value(serde_json::json!({
            "isolation": "container",
            "root": {"path": "/srv/busybox"},
            "process": {"args": ["true"]},
        }))
        .expect("a minimal Plan");
        plan.hostname = Some(name.to_owned());
        plan
    }

    #[test]
    fn each_shape_reads_back_as_written() {
        for plans in [
            Plans::One(Box::new(plan("a"))),
            Plans::Together(vec![plan("a"), plan("b")]),
            Plans::InOrder(vec![plan("a"), plan("b")]),
        ] {
            let json = plans.to_json();
            assert_eq!(Plans::from_json(&json).unwrap(), plans, "{json}");
        }
    }

    #[test]
    fn an_in_order_group_keeps_its_order_in_json() {
        let json = Plans::new(vec![plan("first"), plan("second")], true).to_json();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        let members = value["inOrder"].as_array().expect("{\"inOrder\": [...]}");
        assert_eq!(members[0]["hostname"], "first");
        assert_eq!(members[1]["hostname"], "second");
        let group = Plans::from_json(&json).unwrap();
        assert!(group.sequential());
        assert_eq!(group.plans()[0].hostname.as_deref(), Some("first"));
    }

    #[test]
    fn one_plan_is_an_object_and_a_concurrent_group_an_array() {
        let one = Plans::new(vec![plan("a")], true).to_json();
        assert!(one.starts_with("{\n  \"isolation\""), "{one}");
        let together = Plans::new(vec![plan("a"), plan("b")], false).to_json();
        assert!(together.starts_with('['), "{together}");
        assert!(!Plans::from_json(&together).unwrap().sequential());
    }

    #[test]
    fn bad_files_say_what_is_wrong_and_where() {
        assert_eq!(
            Plans::from_json("[]").unwrap_err().to_string(),
            "the group has no Plan to launch; give at least one"
        );
        assert_eq!(
            Plans::from_json("{\"inOrder\": []}")
                .unwrap_err()
                .to_string(),
            "the group has no Plan to launch; give at least one"
        );
        let typo = Plans::from_json("{\"inOrder\": [], \"plans\": []}")
            .unwrap_err()
            .to_string();
        assert!(
            typo.starts_with("in-order group: unknown field `plans`"),
            "{typo}"
        );
        let bad_member = Plans::from_json("[\n{\"isolation\": \"vm\"}]")
            .unwrap_err()
            .to_string();
        assert!(bad_member.contains("line 2"), "{bad_member}");
        assert!(
            Plans::from_json("42")
                .unwrap_err()
                .to_string()
                .starts_with("expected a Plan")
        );
    }
}
