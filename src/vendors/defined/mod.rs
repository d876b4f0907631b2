pub mod mapping;
pub mod model;
