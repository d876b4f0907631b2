pub mod auth;
pub mod mapping;
pub mod model;
