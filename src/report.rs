//! Rendering an [`Analysis`]: tables (comfy-table), Markdown, CSV and JSON, with human units
//! (K/M/G, KiB/MiB) next to exact integers, and `--depth` folding of block instances into one
//! row. Only this module formats for people; it never prints.
