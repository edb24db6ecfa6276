//! The application message vocabulary (the seed's `MessageType` list) and its delivery classes.

use serde::{Deserialize, Serialize};

/// Declares a `Copy` enum of wire names with `ALL`, `as_str` and `from_name`.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $wire:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// Wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }

            /// Parses a wire name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// Message types of the durable class: persisted in the recipient's inbox, acknowledged,
    /// redelivered until acked, expired or dead-lettered.
    DurableKind {
        /// A chat message from the user to the agent.
        UserMessage => "user_message",
        /// Start a new agent task.
        NewTask => "new_task",
        /// Abort a running task.
        AbortTask => "abort_task",
        /// Pause a running task.
        PauseTask => "pause_task",
        /// Final result of a tool execution.
        ToolComplete => "tool_complete",
        /// Failure of a tool execution.
        ToolError => "tool_error",
        /// A file changed.
        FileChange => "file_change",
        /// A file was created.
        FileCreate => "file_create",
        /// A file was deleted.
        FileDelete => "file_delete",
    }
}

wire_enum! {
    /// Message types of the live class: streamed to online devices with a per-stream sequence,
    /// kept only in a bounded replay window, never persisted.
    LiveKind {
        /// A tool execution started.
        ToolStart => "tool_start",
        /// Progress of a tool execution.
        ToolProgress => "tool_progress",
        /// Synchronisation state.
        SyncStatus => "sync_status",
        /// A conversation changed.
        ConversationUpdate => "conversation_update",
    }
}

/// Delivery class of an application message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    /// Inbox plane.
    Durable(DurableKind),
    /// Stream plane.
    Live(LiveKind),
}

impl MessageKind {
    /// Classifies a wire type name; `None` for control frames and unknown names.
    pub fn from_name(name: &str) -> Option<Self> {
        DurableKind::from_name(name)
            .map(MessageKind::Durable)
            .or_else(|| LiveKind::from_name(name).map(MessageKind::Live))
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Durable(k) => k.as_str(),
            MessageKind::Live(k) => k.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_classes_do_not_overlap() {
        for k in DurableKind::ALL {
            assert_eq!(DurableKind::from_name(k.as_str()), Some(*k));
            assert_eq!(LiveKind::from_name(k.as_str()), None);
            assert_eq!(MessageKind::from_name(k.as_str()), Some(MessageKind::Durable(*k)));
        }
        for k in LiveKind::ALL {
            assert_eq!(LiveKind::from_name(k.as_str()), Some(*k));
            assert_eq!(MessageKind::from_name(k.as_str()), Some(MessageKind::Live(*k)));
        }
        assert_eq!(DurableKind::ALL.len() + LiveKind::ALL.len(), 13);
        assert_eq!(MessageKind::from_name("hello"), None);
    }

    #[test]
    fn serde_uses_wire_names() {
        let text = serde_json::to_string(&DurableKind::NewTask).unwrap();
        assert_eq!(text, "\"new_task\"");
    }
}
