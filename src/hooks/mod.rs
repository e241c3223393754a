//! The hooks themselves and Velero's rules for them: the template library, the hook scripts it
//! embeds, the choice of template and container for a pod, Velero's annotation keys and value
//! grammar, and the lint rules `audit` and `render --check` apply. Pure: no I/O.

pub mod detect;
pub mod rules;
pub mod script;
pub mod template;
pub mod velero;
