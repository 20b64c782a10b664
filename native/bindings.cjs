// Stands in for @duckdb/node-bindings in the compiled binary (scripts/build.ts
// points the import here): unpacks the embedded duckdb.node and libduckdb.so
// on first use and loads them from disk.
module.exports = require("./load.ts").loadEmbeddedBindings();
