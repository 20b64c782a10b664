// Tests read API responses loosely: `await res.json()` is `any` here, as in Bun's own typings.
export {};
declare global {
  interface Response {
    json(): Promise<any>;
  }
}
