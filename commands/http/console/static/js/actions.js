// What the signed-in person may do now, as buttons; each opens a form whose fields come from
// the command's request body in the OpenAPI document, so the console never keeps a second
// list of fields. The answer, or the refusal with its code and rule, is shown under it.

import { command, openapi, Problem } from "./api.js";
import { h, problemBox, sentence, words } from "./dom.js";

async function bodySchema(name) {
  const doc = await openapi();
  const post = doc.paths[`/v1/commands/${name}`]?.post;
  const ref = post?.requestBody?.content?.["application/json"]?.schema?.$ref;
  return ref ? doc.components.schemas[ref.split("/").pop()] : { properties: {}, required: [] };
}

/** The non-null alternatives of a property (pydantic writes optionals as anyOf [..., null]). */
function kinds(property) {
  const options = property.anyOf ?? [property];
  return options.filter((option) => option.type !== "null");
}

function input(name, property, required, fixed, only) {
  const id = `field-${name}`;
  const options = kinds(property);
  const choices = only ?? options.find((o) => o.enum)?.enum;
  const isList = options.some((o) => o.type === "array");
  const long = options.some((o) => (o.maxLength ?? 0) > 200);
  const numeric = options.some((o) => o.type === "number");
  let control;
  if (choices) {
    control = h(
      "select",
      { id, name, required },
      required ? null : h("option", { value: "" }, "—"),
      choices.map((c) => h("option", { value: c }, words(c))),
    );
  } else if (isList || long) {
    control = h("textarea", { id, name, rows: isList ? 2 : 3, required });
  } else {
    control = h("input", {
      id,
      name,
      type: "text",
      required,
      inputmode: numeric ? "decimal" : null,
      pattern: options.find((o) => o.pattern)?.pattern?.replace(/^\^|\$$/g, ""),
      autocomplete: "off",
    });
  }
  if (fixed !== undefined) {
    control.value = fixed;
    control.readOnly = true;
  }
  const hint = [property.description, isList ? "one per line" : null, required ? null : "optional"]
    .filter(Boolean)
    .join("; ");
  return {
    element: h(
      "div",
      { class: "field" },
      h("label", { for: id }, property.title ?? sentence(name), hint ? h("span", { class: "hint" }, ` (${hint})`) : null),
      control,
    ),
    value() {
      const text = control.value.trim();
      if (!text) return undefined;
      return isList ? text.split("\n").map((line) => line.trim()).filter(Boolean) : text;
    },
  };
}

/**
 * Buttons for `commands` (the `allowed` answer); `context` holds the fields already known
 * (the order or appeal the buttons act on), `choices` the values a command's field may take
 * now where the server narrowed them (`{open_appeal: {reason: [...]}}`). `opened()` runs when
 * a form opens (what an earlier action said no longer applies), `done(answer)` after a
 * command succeeds.
 */
export function actionPanel(groups, opened, done) {
  const area = h("div", { class: "action-form" });
  const buttons = groups.flatMap(({ commands, context, choices = {} }) =>
    commands.map((name) =>
      h(
        "button",
        { type: "button", "data-command": name, onclick: () => open(name, context, choices[name] ?? {}) },
        sentence(name),
      ),
    ),
  );
  const panel = h(
    "div",
    { class: "actions" },
    buttons.length
      ? h("div", { class: "buttons" }, buttons)
      : h("p", { class: "muted empty" }, "Nothing you may do on this order now."),
    area,
  );

  async function open(name, context, only) {
    const schema = await bodySchema(name);
    const required = new Set(schema.required ?? []);
    const fields = Object.entries(schema.properties ?? {}).map(([field, property]) => [
      field,
      input(field, property, required.has(field), context[field], only[field]),
    ]);
    const outcome = h("div", { "aria-live": "polite" });
    const key = crypto.randomUUID(); // one command, however often the form is sent
    const form = h(
      "form",
      { class: "command-form", "aria-label": sentence(name) },
      h("h3", {}, sentence(name)),
      fields.map(([, f]) => f.element),
      h(
        "div",
        { class: "form-buttons" },
        h("button", { type: "submit", class: "primary" }, `Send: ${words(name)}`),
        h("button", { type: "button", class: "ghost", onclick: () => area.replaceChildren() }, "Close"),
      ),
      outcome,
    );
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = {};
      for (const [field, f] of fields) {
        const value = f.value();
        if (value !== undefined) body[field] = value;
      }
      outcome.replaceChildren(h("p", { class: "muted" }, "Sending…"));
      try {
        done(await command(name, body, key));
      } catch (error) {
        const problem = error instanceof Problem ? error : new Problem(0, { detail: String(error) });
        outcome.replaceChildren(problemBox(problem));
      }
    });
    area.replaceChildren(form);
    opened();
    (form.querySelector("input:not([readonly]), select, textarea") ?? form.querySelector("button")).focus();
  }

  return panel;
}

export function isOpen(panel) {
  return panel.querySelector("form") !== null;
}
