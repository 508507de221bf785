// Entry point: one store, one connection, one render. `window.__sidepanel` exposes both to the
// end-to-end tests (and to a curious user's console); it holds no credential.

import { render } from "preact";
import { App } from "./app";
import { applyTheme, loadPrefs } from "./prefs";
import { Connection } from "./rpc";
import { Store } from "./store";
import "./styles.css";

const store = new Store();
const conn = new Connection(store);
applyTheme(loadPrefs().theme);

const unsubscribe = store.subscribe(() => {
  if (store.state) {
    performance.mark("sidepanel-first-state");
    unsubscribe();
  }
});

(window as any).__sidepanel = { store, conn };
const root = document.getElementById("app")!;
root.textContent = ""; // the "loading" line, shown until this script runs
render(<App store={store} conn={conn} />, root);
conn.start();
