import { setDefaultTimeout } from "bun:test";

// Integration tests start real servers, sockets and subprocesses; 5 s (Bun's default) is tight on a busy 2-core machine.
setDefaultTimeout(60_000);
