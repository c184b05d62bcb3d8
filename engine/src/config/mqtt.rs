//! Checks of the `[mqtt]` section (its types are the broker's).

use mast_broker::config::MqttConfig;

use super::Invalid;

/// Checks the `[mqtt]` section.
pub(super) fn check(cfg: &MqttConfig) -> Result<(), Invalid> {
    if cfg.max_packet_size < 64 {
        return Err(Invalid::new(
            "mqtt.max_packet_size",
            format!(
                "mqtt.max_packet_size must be at least 64, not {}",
                cfg.max_packet_size
            ),
        ));
    }
    if cfg.receive_maximum == 0 {
        return Err(Invalid::new(
            "mqtt.receive_maximum",
            "mqtt.receive_maximum must be > 0",
        ));
    }
    if cfg.max_inflight_messages == 0 {
        return Err(Invalid::new(
            "mqtt.max_inflight_messages",
            "mqtt.max_inflight_messages must be > 0",
        ));
    }
    for u in &cfg.users {
        argon2::PasswordHash::new(&u.password_hash).map_err(|e| {
            Invalid::new(
                "mqtt.users",
                format!(
                    "mqtt.users {:?}: password_hash is not a PHC string: {e}",
                    u.name
                ),
            )
        })?;
    }
    for r in &cfg.acl {
        for p in r.publish.iter().chain(&r.subscribe) {
            let probe = p.replace("%c", "c").replace("%u", "u");
            mast_protocol::topic::validate_filter(&probe)
                .map_err(|e| Invalid::new("mqtt.acl", format!("mqtt.acl pattern {p:?}: {e}")))?;
        }
    }
    Ok(())
}
