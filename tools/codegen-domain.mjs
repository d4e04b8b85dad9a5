// Generates, from the reflected proto/ (protobufjs Root), what a field needs besides its wire code:
// the domain types (@opal/driver, src/gen/messages.ts), the enum maps and the wire<->domain mappers
// (@opal/protocol, src/gen/enums.ts and src/gen/mappers.ts). tools/codegen-overlay.mjs lists where
// the domain deliberately differs from the wire.
import protobuf from "protobufjs";
import { ENUMS, HAND_WRITTEN_TYPES, MESSAGES } from "./codegen-overlay.mjs";

const PACKAGE = "opal.device.v1";
const SIXTY_FOUR = new Set(["uint64", "int64", "sint64", "fixed64", "sfixed64"]);

/** `cache_salt` -> `cacheSalt`. */
const camel = (snake) => snake.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
/** `KvDtype` -> `KV_DTYPE`: the prefix of an enum's value names. */
const screaming = (pascal) => pascal.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase();
/** The keys of `record`, sorted. */
const sorted = (record) => Object.keys(record).sort();

/** The three generated files, keyed by path from the repository root. */
export function domainFiles(root, header) {
  const model = describe(root);
  return {
    "packages/driver/src/gen/messages.ts": header + messagesFile(model),
    "packages/protocol/src/gen/enums.ts": header + enumsFile(model),
    "packages/protocol/src/gen/mappers.ts": header + mappersFile(model),
  };
}

// --- The model: reflected messages and enums with their overlay. ---------------------------------

/** The enums and messages the overlay lists, reflected from `root` and merged with their overlay. */
function describe(root) {
  const enums = sorted(ENUMS).map((name) => {
    const type = root.lookupEnum(`${PACKAGE}.${name}`);
    const prefix = `${screaming(name)}_`;
    const values = Object.entries(type.values)
      .filter(([, number]) => number !== 0)
      .map(([key, number]) => {
        if (!key.startsWith(prefix)) throw new Error(`codegen: ${key} lacks the prefix ${prefix}`);
        return {
          name: key.slice(prefix.length).toLowerCase(),
          number,
          comment: type.comments[key],
        };
      });
    return { ...ENUMS[name], name, comment: type.comment, values };
  });
  const enumByName = new Map(enums.map((e) => [e.name, e]));
  const messages = sorted(MESSAGES).map((name) => {
    const overlay = MESSAGES[name];
    const type = root.lookupType(`${PACKAGE}.${name}`);
    const domain = overlay.name ?? name;
    return {
      ...overlay,
      proto: name,
      domain,
      mapper: overlay.mapper ?? domain,
      comment: type.comment,
      fields: type.fieldsArray.map((f) => describeField(f, overlay, enumByName)),
      oneofs: overlay.oneofs ?? {},
    };
  });
  const byProto = new Map(messages.map((m) => [m.proto, m]));
  for (const message of messages) {
    for (const field of message.fields) {
      if (field.kind !== "message" || field.custom || field.omit) continue;
      field.message = byProto.get(field.protoType);
      if (!field.message) throw new Error(`codegen: ${field.protoType} has no domain overlay`);
    }
    // A received message decodes its enums without judging into `Received<Name>`.
    message.receivedName = message.received ? `Received${message.domain}` : message.domain;
  }
  for (const message of messages) message.namesField = namesField(message, new Set());
  return { enums, enumByName, messages, byProto };
}

/** True when decoding `message` can throw an error naming a field (so it takes a field path). */
function namesField(message, seen) {
  if (seen.has(message.proto)) return false;
  seen.add(message.proto);
  if (message.check || Object.values(message.oneofs).some((o) => o.required === "throw"))
    return true;
  return message.fields.some(
    (f) =>
      !f.omit &&
      (f.required === "throw" ||
        (f.kind === "enum" && !message.received && f.enum !== "known") ||
        (f.message && namesField(f.message, seen))),
  );
}

/** One reflected field with its overlay: its kind ("enum", "message" or the scalar type) and names. */
function describeField(f, overlay, enumByName) {
  const name = camel(f.name);
  const o = overlay.fields?.[name] ?? {};
  const resolved = f.resolvedType;
  let kind = f.type;
  if (resolved instanceof protobuf.Enum) kind = "enum";
  else if (resolved instanceof protobuf.Type) kind = "message";
  if (kind === "enum" && !enumByName.has(resolved.name)) {
    throw new Error(`codegen: enum ${resolved.name} has no overlay`);
  }
  return {
    ...o,
    optional: o.optional ?? optionalOnWire(f, kind, o),
    name,
    snake: f.name,
    kind,
    protoType: resolved ? resolved.name : f.type,
    repeated: f.repeated,
    oneof: f.partOf?.name,
    custom: o.type !== undefined,
    comment: f.comment,
    enumInfo: kind === "enum" ? enumByName.get(resolved.name) : undefined,
  };
}

/**
 * How a scalar field the proto marks optional (the proto3 `optional` keyword, or a comment starting
 * `OPTIONAL`) is optional in the domain: "omitZero" (`?`, a zero on the wire decodes to absent).
 * Undefined for a message or repeated field, or when the overlay says `required`.
 */
function optionalOnWire(f, kind, overlay) {
  if (kind === "message" || f.repeated || overlay.required !== undefined) return undefined;
  const marked = f.options?.proto3_optional === true || /^OPTIONAL\b/.test(f.comment ?? "");
  return marked ? "omitZero" : undefined;
}

/** Fields of a message in domain order, with each domain oneof in place of its first case. */
function domainFields(message) {
  const out = [];
  for (const field of message.fields) {
    if (field.omit) continue;
    if (field.oneof && message.oneofs[field.oneof]) {
      if (out.some((f) => f.oneofGroup === field.oneof)) continue;
      const cases = message.fields.filter((f) => f.oneof === field.oneof);
      out.push({
        oneofGroup: field.oneof,
        name: field.oneof,
        cases,
        ...message.oneofs[field.oneof],
      });
      continue;
    }
    out.push(field);
  }
  return out;
}

/** True when `field` is `?` in the domain type (or its received form when `received`). */
const isOptional = (field, received) =>
  field.optional !== undefined ||
  (field.kind === "message" && !field.repeated && (received || field.required === undefined));

// --- Domain types: packages/driver/src/gen/messages.ts -------------------------------------------

/** The text of packages/driver/src/gen/messages.ts: domain types, and checks of those @opal/kv owns. */
function messagesFile(model) {
  // @opal/kv owns the types marked so in the overlay, and the oneof unions (KvAttention).
  const kvTypes = new Set();
  for (const e of model.enums) if (e.owner === "kv") kvTypes.add(e.name);
  for (const m of model.messages) {
    if (m.owner === "kv") kvTypes.add(m.domain);
    for (const oneof of Object.values(m.oneofs)) kvTypes.add(oneof.type);
  }
  const lines = [
    `import type { ${[...kvTypes].sort().join(", ")} } from "@opal/kv";`,
    ...Object.entries(HAND_WRITTEN_TYPES).map(
      ([module, names]) => `import type { ${names.join(", ")} } from "${module}";`,
    ),
    "",
    "/** True when `A` and `B` accept the same values. */",
    "type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;",
    "/** Fails to compile unless `T` is `true`. */",
    "type Check<T extends true> = T;",
    "",
  ];
  for (const e of model.enums) {
    const union = e.values.map((v) => JSON.stringify(v.name)).join(" | ");
    if (e.owner === "kv") {
      lines.push(
        `/** Compile-time check: \`@opal/kv\`'s \`${e.name}\` has exactly the values of \`${PACKAGE}.${e.name}\`. */`,
        `export type ${e.name}MatchesWire = Check<Same<${e.name}, ${union}>>;`,
        "",
      );
      continue;
    }
    lines.push(...doc(e.comment, ""), `export type ${e.name} = ${union};`, "");
  }
  for (const m of model.messages) {
    if (m.owner === "kv") {
      lines.push(
        `/** Compile-time check: \`@opal/kv\`'s \`${m.domain}\` is \`${PACKAGE}.${m.proto}\`'s domain shape. */`,
        `export type ${m.domain}MatchesWire = Check<Same<${m.domain}, {`,
        ...domainFields(m).flatMap((f) => fieldLines(f, false)),
        "}>>;",
        "",
      );
    } else {
      lines.push(...doc(m.comment, ""), `export interface ${m.domain} {`);
      lines.push(...domainFields(m).flatMap((f) => fieldLines(f, false)), "}", "");
    }
    if (m.received) {
      lines.push(
        `/** A \`${PACKAGE}.${m.proto}\` as received, before validation: enums may be unknown. */`,
        `export interface ${m.receivedName} {`,
        ...domainFields(m).flatMap((f) => fieldLines(f, true)),
        "}",
        "",
      );
    }
  }
  lines.push(...oneofUnionChecks(model));
  return lines.join("\n");
}

/** Compile-time checks that each oneof's union type is the union of its cases, tagged. */
function oneofUnionChecks(model) {
  const seen = new Set();
  const lines = [];
  for (const m of model.messages) {
    for (const f of domainFields(m)) {
      if (!f.oneofGroup || seen.has(f.type)) continue;
      seen.add(f.type);
      const union = f.cases
        .map((c) => `({ readonly ${f.tag}: "${c.name}" } & ${c.message.domain})`)
        .join(" | ");
      lines.push(
        `/** Compile-time check: \`${f.type}\` is the union of \`${m.proto}.${f.name}\`'s cases. */`,
        `export type ${f.type}MatchesWire = Check<Same<${f.type}, ${union}>>;`,
        "",
      );
    }
  }
  return lines;
}

/** The lines declaring `field` in a domain interface (received form when `received`), its doc first. */
function fieldLines(field, received) {
  const comment = field.oneofGroup
    ? `One of: ${field.cases.map((c) => c.snake).join(", ")}.`
    : field.comment;
  const optional = !field.oneofGroup && isOptional(field, received) ? "?" : "";
  return [
    ...doc(comment, "  "),
    `  readonly ${field.name}${optional}: ${fieldType(field, received)};`,
  ];
}

/** The TypeScript type of `field` in a domain interface (received form when `received`). */
function fieldType(field, received) {
  if (field.oneofGroup) return field.type;
  if (field.custom) return received && field.receivedType ? field.receivedType : field.type;
  const type = elementType(field, received);
  if (!field.repeated) return type;
  return type.includes(" ") ? `readonly (${type})[]` : `readonly ${type}[]`;
}

/** The TypeScript type of one value of `field` (an element when repeated). */
function elementType(field, received) {
  if (field.kind === "enum") {
    const name = field.enumInfo.name;
    return received ? `${name} | UnknownEnumValue<"${name}">` : name;
  }
  if (field.kind === "message") {
    return received && field.message.received ? field.message.receivedName : field.message.domain;
  }
  if (field.kind === "bytes") return "Uint8Array";
  if (field.kind === "string") return "string";
  if (field.kind === "bool") return "boolean";
  return "number";
}

/** `comment` as TSDoc lines indented by `indent`; none without a comment. */
function doc(comment, indent) {
  if (!comment) return [];
  const text = comment.replaceAll("*/", "*\\/").split("\n");
  if (text.length === 1) return [`${indent}/** ${text[0]} */`];
  return [`${indent}/**`, ...text.map((line) => `${indent} * ${line}`.trimEnd()), `${indent} */`];
}

// --- Enum maps: packages/protocol/src/gen/enums.ts -----------------------------------------------

/** The text of packages/protocol/src/gen/enums.ts: one enum map per overlay enum. */
function enumsFile(model) {
  const lines = [
    'import { Reason } from "@opal/core";',
    'import { createEnumMap } from "../create-enum-map";',
    "",
  ];
  for (const e of model.enums) {
    const union = e.values.map((v) => JSON.stringify(v.name)).join(" | ");
    const pairs = e.values.map((v) => `[${JSON.stringify(v.name)}, ${v.number}]`).join(", ");
    const reason = e.unknownReason ? `, Reason.${e.unknownReason}` : "";
    lines.push(
      `/** The domain names of \`${PACKAGE}.${e.name}\` and its numbers. */`,
      `export const ${e.map} = createEnumMap<${union}, "${e.name}">("${e.name}", [${pairs}]${reason});`,
      "",
    );
  }
  return lines.join("\n");
}

// --- Mappers: packages/protocol/src/gen/mappers.ts -----------------------------------------------

/** The text of packages/protocol/src/gen/mappers.ts: helpers, then each message's two mappers. */
function mappersFile(model) {
  const driverTypes = new Set();
  const kvTypes = new Set();
  const imports = new Map();
  const addImports = (record) => {
    for (const [module, names] of Object.entries(record ?? {})) {
      const set = imports.get(module) ?? new Set();
      for (const n of names) set.add(n);
      imports.set(module, set);
    }
  };
  const maps = new Set();
  const body = [];
  for (const m of model.messages) {
    (m.owner === "kv" ? kvTypes : driverTypes).add(m.domain);
    if (m.received) driverTypes.add(m.receivedName);
    if (m.check) addImports({ [m.check.module]: [m.check.name] });
    for (const f of m.fields) {
      addImports(f.imports);
      if (f.kind === "enum" && !f.omit) maps.add(f.enumInfo.map);
    }
    for (const f of domainFields(m)) if (f.oneofGroup) kvTypes.add(f.type);
    body.push(...toWireMapper(m), ...fromWireMapper(m));
  }
  if (driverTypes.size > 0)
    imports.set("@opal/driver", new Set([...driverTypes].map((n) => `type ${n}`)));
  const kvImports = imports.get("@opal/kv") ?? new Set();
  for (const n of kvTypes) kvImports.add(`type ${n}`);
  imports.set("@opal/kv", kvImports);
  imports.set("./enums", maps);
  imports.set("./pb.js", new Set(["type opal"]));
  imports.set("@opal/core", new Set(["invalidField"]));
  const importLines = [...imports.keys()].sort().map((module) => {
    const names = [...imports.get(module)].sort();
    const types = names.filter((n) => n.startsWith("type ")).map((n) => n.slice(5));
    const values = names.filter((n) => !n.startsWith("type "));
    if (values.length === 0) return `import type { ${types.join(", ")} } from "${module}";`;
    return `import { ${[...values, ...types.map((n) => `type ${n}`)].join(", ")} } from "${module}";`;
  });
  return [
    ...importLines,
    "",
    "/** `name` below the field path `field` (which may be empty). */",
    'const path = (field: string, name: string): string => (field ? [field, name].join(".") : name);',
    "",
    "/** `{ [name]: value }` when the decoded sub-message `value` has any field set, else `{}`. */",
    "function ifNonEmpty<K extends string, T extends object>(name: K, value: T | undefined): { [P in K]?: T } {",
    "  return value && Object.keys(value).length > 0 ? ({ [name]: value } as { [P in K]?: T }) : {};",
    "}",
    "",
    "/** Values of a repeated enum this version knows; newer values are dropped. */",
    "function known<T>(values: readonly number[] | null | undefined, map: { fromWire(v: number, f: string): T }): T[] {",
    "  return (values ?? []).flatMap((value) => {",
    "    try {",
    '      return [map.fromWire(value, "")];',
    "    } catch {",
    "      return [];",
    "    }",
    "  });",
    "}",
    "",
    "/** A missing required field. */",
    'const missing = (field: string) => invalidField(field, "required, got nothing");',
    "",
    ...body,
  ].join("\n");
}

/** A call of `message`'s decoder on `value`, with the field path when it takes one. */
const call = (message, value, field) =>
  message.namesField
    ? `fromWire${message.mapper}(${value}, ${field})`
    : `fromWire${message.mapper}(${value})`;

/** The protobufjs properties type of message `m`. */
const wireType = (m) => `opal.device.v1.${m.proto}.$Properties`;

/** The lines of `toWire<mapper>`, domain value to wire properties. */
function toWireMapper(m) {
  const lines = [
    `/** \`${PACKAGE}.${m.proto}\` from its domain value. */`,
    `export function toWire${m.mapper}(d: ${m.domain}): ${wireType(m)} {`,
    "  return {",
  ];
  for (const f of m.fields) {
    if (f.oneof && m.oneofs[f.oneof]) continue;
    if (f.omit && !f.toWire) continue;
    lines.push(`    ${toWireField(f)},`);
  }
  for (const [group, spec] of Object.entries(m.oneofs)) {
    const cases = m.fields.filter((f) => f.oneof === group);
    let expr = "{}";
    for (const c of [...cases].reverse()) {
      const value = `{ ${c.name}: toWire${c.message.mapper}(d.${group}) }`;
      expr =
        expr === "{}" && c === cases.at(-1)
          ? value
          : `d.${group}.${spec.tag} === "${c.name}" ? ${value} : ${expr}`;
    }
    lines.push(`    ...(${expr}),`);
  }
  lines.push("  };", "}", "");
  return lines;
}

/** The property (or spread) that sets field `f` in a wire message from the domain value `d`. */
function toWireField(f) {
  const value = `d.${f.name}`;
  if (f.toWire) {
    return f.kind === "message" && isOptional(f, false) && !f.repeated
      ? `...(${value} ? { ${f.name}: ${f.toWire} } : {})`
      : `${f.name}: ${f.toWire}`;
  }
  const opt = f.optional !== undefined;
  if (f.repeated) {
    const list = opt ? `(${value} ?? [])` : value;
    if (f.kind === "enum") return `${f.name}: ${list}.map((v) => ${f.enumInfo.map}.toWire(v))`;
    if (f.kind === "message") return `${f.name}: ${list}.map((v) => toWire${f.message.mapper}(v))`;
    return `${f.name}: [...${list}]`;
  }
  if (f.kind === "enum") {
    return opt
      ? `${f.name}: ${value} ? ${f.enumInfo.map}.toWire(${value}) : 0`
      : `${f.name}: ${f.enumInfo.map}.toWire(${value})`;
  }
  if (f.kind === "message") {
    return isOptional(f, false)
      ? `...(${value} ? { ${f.name}: toWire${f.message.mapper}(${value}) } : {})`
      : `${f.name}: toWire${f.message.mapper}(${value})`;
  }
  return opt ? `${f.name}: ${value} ?? ${zero(f)}` : `${f.name}: ${value}`;
}

/** The proto3 default of scalar field `f`, as TypeScript. */
function zero(f) {
  if (f.kind === "string") return '""';
  if (f.kind === "bool") return "false";
  if (f.kind === "bytes") return "new Uint8Array()";
  return "0";
}

/** The lines of `fromWire<mapper>`, wire properties to domain (or received) value. */
function fromWireMapper(m) {
  const received = Boolean(m.received);
  let judge = "";
  if (received) {
    judge =
      " Decodes without judging: an UNSPECIFIED or unknown enum becomes an `UnknownEnumValue` for the validator.";
  } else if (m.namesField) {
    judge =
      " Throws INVALID_ARGUMENT naming the field (below `field`, this message's path) for an enum it cannot decode (UNSPECIFIED or unknown) or a missing required field.";
  }
  const lines = [
    `/** \`${PACKAGE}.${m.proto}\` as its domain value.${judge} */`,
    m.namesField
      ? `export function fromWire${m.mapper}(w: ${wireType(m)}, field = "${m.field ?? ""}"): ${m.receivedName} {`
      : `export function fromWire${m.mapper}(w: ${wireType(m)}): ${m.receivedName} {`,
  ];
  for (const [group, spec] of Object.entries(m.oneofs)) {
    if (spec.required !== "throw") continue;
    const cases = m.fields.filter((f) => f.oneof === group);
    lines.push(
      `  if (!${cases.map((c) => `w.${c.name}`).join(" && !")}) throw missing(path(field, "${group}"));`,
    );
  }
  for (const f of m.fields) {
    if (f.required === "throw" && !received) {
      lines.push(`  if (!w.${f.name}) throw missing(path(field, "${f.snake}"));`);
    }
  }
  const ret = m.check ? `  const domain: ${m.receivedName} =` : "  return";
  lines.push(`${ret} {`);
  for (const f of domainFields(m)) lines.push(`    ${fromWireField(f, received)},`);
  lines.push("  };");
  if (m.check) lines.push(`  ${m.check.name}(domain, w, field);`, "  return domain;");
  lines.push("}", "");
  return lines;
}

/** The property (or spread) that sets field `f` in a domain value from the wire message `w`. */
function fromWireField(f, received) {
  if (f.oneofGroup) return fromWireOneof(f);
  const value = `w.${f.name}`;
  if (f.fromWire) {
    return f.kind === "message" && !f.repeated && isOptional(f, received)
      ? `...(${value} ? { ${f.name}: ${f.fromWire} } : {})`
      : `${f.name}: ${f.fromWire}`;
  }
  if (f.repeated) return fromWireRepeated(f);
  if (f.kind === "enum") return fromWireEnum(f, received);
  if (f.kind === "message") return fromWireMessage(f, received);
  return fromWireScalar(f);
}

/** A domain oneof from whichever case is set (the first case, decoded from nothing, when none is). */
function fromWireOneof(f) {
  const arm = (c) =>
    `{ ${f.tag}: "${c.name}" as const, ...${call(c.message, `w.${c.name} ?? {}`, `path(field, "${c.snake}")`)} }`;
  let expr = arm(f.cases[0]);
  for (const c of [...f.cases].reverse()) expr = `w.${c.name} ? ${arm(c)} : ${expr}`;
  return `${f.name}: ${expr}`;
}

/** A repeated field: a copied array, its elements decoded; absent when empty if "omitZero". */
function fromWireRepeated(f) {
  const value = `w.${f.name}`;
  const sub = `path(field, "${f.snake}")`;
  const list = `(${value} ?? [])`;
  let expr;
  if (f.kind === "enum") {
    expr =
      f.enum === "known"
        ? `known(${value}, ${f.enumInfo.map})`
        : `${list}.map((v) => ${f.enumInfo.map}.fromWire(v, ${sub}))`;
  } else if (f.kind === "message") expr = `${list}.map((v) => ${call(f.message, "v", sub)})`;
  else expr = `[...${f.optional === "omitZero" ? value : list}]`;
  return f.optional === "omitZero"
    ? `...(${value}?.length ? { ${f.name}: ${expr} } : {})`
    : `${f.name}: ${expr}`;
}

/** An enum field: kept as received, or decoded (throwing on UNSPECIFIED unless it has a default). */
function fromWireEnum(f, received) {
  const value = `w.${f.name}`;
  const sub = `path(field, "${f.snake}")`;
  const map = f.enumInfo.map;
  if (received) return `${f.name}: ${map}.decode(${value})`;
  if (f.optional === "omitZero")
    return `...(${value} ? { ${f.name}: ${map}.fromWire(${value}, ${sub}) } : {})`;
  if (f.enum?.default)
    return `${f.name}: ${value} ? ${map}.fromWire(${value}, ${sub}) : "${f.enum.default}"`;
  return `${f.name}: ${map}.fromWire(${value}, ${sub})`;
}

/** A message field: absent when missing if optional, else decoded from an empty message. */
function fromWireMessage(f, received) {
  const value = `w.${f.name}`;
  const decode = (v) => call(f.message, v, `path(field, "${f.snake}")`);
  if (f.emptyIsAbsent) return `...ifNonEmpty("${f.name}", ${value} ? ${decode(value)} : undefined)`;
  if (isOptional(f, received)) return `...(${value} ? { ${f.name}: ${decode(value)} } : {})`;
  return `${f.name}: ${decode(`${value} ?? {}`)}`;
}

/** A scalar field: its zero value when missing, or (if "omitZero") absent when zero. */
function fromWireScalar(f) {
  const value = `w.${f.name}`;
  // A field omitted at its zero value is read only when set, so it needs no default.
  const set = f.optional === "omitZero";
  let expr;
  if (SIXTY_FOUR.has(f.kind)) expr = set ? `Number(${value})` : `Number(${value} ?? 0)`;
  else if (f.kind === "fixed32") expr = set ? `${value} >>> 0` : `(${value} ?? 0) >>> 0`;
  else expr = set ? value : `${value} ?? ${zero(f)}`;
  if (set) return `...(${value} ? { ${f.name}: ${expr} } : {})`;
  return `${f.name}: ${expr}`;
}
