//! ONNX as a frontend: [`proto`] holds the protobuf types and their byte-level helpers (shared
//! with the writer); the reader turns a `ModelProto`'s bytes into the archscope model the YAML
//! path produces, plus the weights its initializers carry; [`export`] writes a built network as a
//! `ModelProto` (`archscope export`). No IO: the CLI reads and writes the files.

pub mod export;
pub mod proto;
