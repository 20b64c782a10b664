import type { FC } from "hono/jsx";
import { FieldError, Layout } from "./layout.tsx";

/** Sign-in: one admin account, password only. */
export const LoginPage: FC<{ next: string; errors?: Record<string, string>; firstStart?: boolean }> = ({ next, errors, firstStart }) => (
  <Layout title="Sign in" active="login" signedIn={false}>
    <section class="card login">
      <h1>Sign in</h1>
      <form class="stack" method="post" action="/admin/login">
        <input type="text" name="username" value="admin" autocomplete="username" hidden />
        <input type="hidden" name="next" value={next} />
        <label>
          Admin password
          <input type="password" name="password" autocomplete="current-password" required autofocus aria-invalid={errors?.password ? "true" : undefined} aria-describedby={errors?.password ? "password-error" : undefined} />
          <FieldError errors={errors} name="password" />
        </label>
        <button type="submit">Sign in</button>
      </form>
      {firstStart && (
        <p class="small muted">
          First start? The password was printed once in the server's log (the line "admin password generated") and written to{" "}
          <code>DATA_DIR/initial-admin-password</code>. Set a new one with <code>switchyard admin password</code>.
        </p>
      )}
    </section>
  </Layout>
);
