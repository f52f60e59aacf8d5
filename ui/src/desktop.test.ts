import { describe, expect, it } from "vitest";
import { commandError, desktop, desktopBridge, type DesktopSettings, fixedBy, leavesDashboard, otherOverrides, settingsProblem } from "./desktop";

const settings: DesktopSettings = {
  port: 3000,
  start_minimised: false,
  start_at_login: true,
  usage_polling: false,
  database_url: null,
  notifications: { auth_failures: true, token_spike: true, oauth: true, upstream_errors: true, plan_window: true, key_expiry: true, spooling: true, port_taken: true },
};

describe("the desktop bridge", () => {
  it("is absent outside the desktop app", () => {
    expect(desktop).toBeNull();
  });

  it("calls the commands by name with camelCase arguments", async () => {
    const calls: [string, unknown][] = [];
    const bridge = desktopBridge(async (cmd, args) => {
      calls.push([cmd, args]);
      return cmd === "save_settings" ? { message: "Saved." } : null;
    });
    expect(await bridge.saveSettings(settings)).toEqual({ message: "Saved." });
    await bridge.testDatabase("postgres://db/nexus");
    await bridge.openUrl("https://claude.ai/oauth/authorize?x=1");
    await bridge.connectClaudeCode();
    expect(calls).toEqual([
      ["save_settings", { settings }],
      ["test_database", { url: "postgres://db/nexus" }],
      ["open_url", { url: "https://claude.ai/oauth/authorize?x=1" }],
      ["connect_claude_code", undefined],
    ]);
  });

  it("turns the string a command rejects with into an Error with that message", async () => {
    const bridge = desktopBridge(async () => {
      throw "could not connect to db:5432: connection refused";
    });
    await expect(bridge.testDatabase("postgres://db")).rejects.toThrow("could not connect to db:5432: connection refused");
    expect(commandError({ message: "m" }).message).toBe("m");
    expect(commandError(new Error("e")).message).toBe("e");
  });
});

describe("links that leave the dashboard", () => {
  const origin = "http://127.0.0.1:3001";
  it("are other sites and mail, not the dashboard's own pages", () => {
    expect(leavesDashboard("https://claude.ai/oauth/authorize?code=true", origin)).toBe(true);
    expect(leavesDashboard("http://127.0.0.1:3000/", origin)).toBe(true);
    expect(leavesDashboard("mailto:me@example.com", origin)).toBe(true);
    expect(leavesDashboard("/accounts", origin)).toBe(false);
    expect(leavesDashboard("http://127.0.0.1:3001/api/requests/export?format=csv", origin)).toBe(false);
    expect(leavesDashboard("javascript:void(0)", origin)).toBe(false);
  });
});

describe("settings", () => {
  it("finds the environment variable that fixes a setting", () => {
    expect(fixedBy("port", ["PORT"])).toBe("PORT");
    expect(fixedBy("database_url", ["PORT", "DATABASE_URL"])).toBe("DATABASE_URL");
    expect(fixedBy("usage_polling", ["CLAUDE_OAUTH_USAGE_INTERVAL"])).toBe("CLAUDE_OAUTH_USAGE_INTERVAL");
    expect(fixedBy("start_at_login", ["PORT"])).toBeNull();
    expect(otherOverrides(["PORT", "NEXUS_DATA_DIR"], ["port", "database_url"])).toEqual(["NEXUS_DATA_DIR"]);
  });

  it("checks the port and the database URL before saving", () => {
    expect(settingsProblem(settings)).toBeNull();
    expect(settingsProblem({ ...settings, port: 0 })).toMatch(/1 to 65535/);
    expect(settingsProblem({ ...settings, port: 70000 })).toMatch(/1 to 65535/);
    expect(settingsProblem({ ...settings, port: Number.NaN })).toMatch(/whole number/);
    expect(settingsProblem({ ...settings, database_url: " " })).toMatch(/Enter the PostgreSQL URL/);
    expect(settingsProblem({ ...settings, database_url: "mysql://db" })).toMatch(/postgres:\/\//);
    expect(settingsProblem({ ...settings, database_url: "postgresql://nexus@db/nexus" })).toBeNull();
  });
});
