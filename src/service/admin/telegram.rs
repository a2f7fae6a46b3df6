//! Telegram users linked to admin accounts (issue 13): the bot acts with the linked admin's
//! role; `tg_notify` is the admin's opt-in to notices. The CLI (`admin link-telegram`) and the
//! bot (`/notify`) call these.
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, Set,
};

use super::{AdminError, AdminView, must_find};
use crate::store::{self, entities::admin};

/// Links Telegram user `telegram_id` to `username` (`None` unlinks). One Telegram user per
/// admin and one admin per Telegram user: the unique index decides.
pub async fn link(
    db: &DatabaseConnection,
    username: &str,
    telegram_id: Option<i64>,
) -> Result<AdminView, AdminError> {
    let m = must_find(db, username).await?;
    let mut am: admin::ActiveModel = m.into();
    am.telegram_id = Set(telegram_id);
    if telegram_id.is_none() {
        am.tg_notify = Set(false);
    }
    am.updated_at = Set(crate::service::now());
    match am.update(db).await {
        Ok(m) => Ok(AdminView::from(&m)),
        Err(e)
            if store::is_unique_violation(&e, "admins_telegram_id_key", "admins.telegram_id") =>
        {
            Err(AdminError::TelegramTaken(telegram_id.unwrap_or_default()))
        }
        Err(e) => Err(e.into()),
    }
}

/// The enabled admin linked to Telegram user `telegram_id`, if any.
pub async fn find_linked(
    db: &impl ConnectionTrait,
    telegram_id: i64,
) -> Result<Option<admin::Model>, DbErr> {
    admin::Entity::find()
        .filter(admin::Column::TelegramId.eq(telegram_id))
        .filter(admin::Column::Disabled.eq(false))
        .one(db)
        .await
}

/// Turns an admin's notices on or off.
pub async fn set_notify(
    db: &DatabaseConnection,
    username: &str,
    on: bool,
) -> Result<AdminView, AdminError> {
    let m = must_find(db, username).await?;
    let mut am: admin::ActiveModel = m.into();
    am.tg_notify = Set(on);
    am.updated_at = Set(crate::service::now());
    Ok(AdminView::from(&am.update(db).await?))
}

/// Telegram ids of the enabled, linked admins who opted in to notices.
pub async fn notice_recipients(db: &impl ConnectionTrait) -> Result<Vec<i64>, DbErr> {
    Ok(admin::Entity::find()
        .filter(admin::Column::TelegramId.is_not_null())
        .filter(admin::Column::TgNotify.eq(true))
        .filter(admin::Column::Disabled.eq(false))
        .all(db)
        .await?
        .into_iter()
        .filter_map(|m| m.telegram_id)
        .collect())
}
