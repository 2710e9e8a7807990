//! ONNX as a frontend: [`proto`] holds the protobuf types and their byte-level helpers (shared
//! with the writer); the reader turns a `ModelProto`'s bytes into the archscope model the YAML
//! path produces, plus the weights its initializers carry. No IO: the CLI reads the file.

pub mod proto;
