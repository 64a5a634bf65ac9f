/**
 * The public API is closed: every type that a user can meet through an export of `index.ts` (a
 * parameter, a return type, a property, a base class, a type argument) is itself exported, so a
 * user can name it (`RunOptions` -> `ExecutorTuning`).
 */
import { fileURLToPath } from 'node:url'
import t from 'tap'
import ts from 'typescript'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Names of types declared in this repository that exported declarations reach but `index.ts` does not export. */
function unexportedPublicTypes(): Map<string, string> {
  const configFile = ts.readConfigFile(`${root}tsconfig.json`, (p) => ts.sys.readFile(p))
  const { options } = ts.parseJsonConfigFileContent(configFile.config, ts.sys, root)
  const program = ts.createProgram([`${root}index.ts`], { ...options, noEmit: true })
  const checker = program.getTypeChecker()
  const index = program.getSourceFile(`${root}index.ts`)!
  const ours = (d: ts.Declaration) => {
    const file = d.getSourceFile().fileName
    return file.startsWith(root) && !file.includes('/node_modules/')
  }
  const exported = new Set<ts.Symbol>()
  const roots: ts.Symbol[] = []
  for (const s of checker.getExportsOfModule(checker.getSymbolAtLocation(index)!)) {
    const target = s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s
    exported.add(target)
    roots.push(target)
  }
  const missing = new Map<string, string>()
  const seenTypes = new Set<ts.Type>()
  const seenSymbols = new Set<ts.Symbol>()

  // Members marked `@internal` in their TSDoc are plumbing between Weir's own modules.
  const isInternal = (d: ts.Declaration) => ts.getJSDocTags(d).some((tag) => tag.tagName.text === 'internal')
  const isPublicMember = (s: ts.Symbol) => {
    const d = s.valueDeclaration ?? s.declarations?.[0]
    if (d === undefined) return true
    if (isInternal(d)) return false
    const name = ts.getNameOfDeclaration(d)
    if (name !== undefined && ts.isPrivateIdentifier(name)) return false
    const flags = ts.getCombinedModifierFlags(d)
    return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0
  }

  const noteNamed = (s: ts.Symbol | undefined, via: string) => {
    if (s === undefined) return
    const decls = s.declarations ?? []
    const named = decls.some((d) => ts.isInterfaceDeclaration(d) || ts.isTypeAliasDeclaration(d) || ts.isClassDeclaration(d) || ts.isEnumDeclaration(d))
    if (named && decls.some(ours) && !exported.has(s) && !missing.has(s.name)) missing.set(s.name, via)
  }

  const visitSignature = (sig: ts.Signature, via: string) => {
    if (sig.declaration !== undefined && !ts.isJSDocSignature(sig.declaration) && isInternal(sig.declaration)) return
    for (const tp of sig.typeParameters ?? []) {
      const c = tp.getConstraint()
      if (c !== undefined) visitType(c, via)
    }
    for (const p of sig.getParameters()) visitType(checker.getTypeOfSymbol(p), `${via}(${p.name})`)
    visitType(sig.getReturnType(), `${via}()`)
  }

  const visitType = (type: ts.Type, via: string, depth = 0): void => {
    if (seenTypes.has(type) || depth > 20) return
    seenTypes.add(type)
    for (const a of type.aliasTypeArguments ?? []) visitType(a, via, depth + 1)
    if (type.aliasSymbol !== undefined) return visitSymbol(type.aliasSymbol, via)
    if (type.isUnionOrIntersection()) {
      for (const u of type.types) visitType(u, via, depth + 1)
      return
    }
    if (type.flags & ts.TypeFlags.Object && (type as ts.ObjectType).objectFlags & ts.ObjectFlags.Reference) {
      for (const a of checker.getTypeArguments(type as ts.TypeReference)) visitType(a, via, depth + 1)
    }
    const symbol = type.getSymbol()
    // A library's type (Promise, Map, ...): only its type arguments can lead back to ours.
    if (symbol !== undefined && !(symbol.declarations ?? []).some(ours)) return
    // A named type of ours: walk its declaration once, not every instantiation.
    if (symbol !== undefined && (symbol.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.Class | ts.SymbolFlags.Enum)) !== 0) return visitSymbol(symbol, via)
    for (const p of checker.getPropertiesOfType(type)) {
      if (isPublicMember(p)) visitType(checker.getTypeOfSymbol(p), `${via}.${p.name}`, depth + 1)
    }
    for (const sig of type.getCallSignatures()) visitSignature(sig, via)
    for (const sig of type.getConstructSignatures()) visitSignature(sig, `new ${via}`)
  }

  const visitMembers = (type: ts.Type, via: string) => {
    if (type.isClassOrInterface()) {
      for (const b of checker.getBaseTypes(type)) visitType(b, via)
      for (const tp of type.typeParameters ?? []) {
        const c = tp.getConstraint()
        if (c !== undefined) visitType(c, `${via}<${tp.symbol.name}>`)
      }
    }
    for (const p of checker.getPropertiesOfType(type)) {
      if (isPublicMember(p)) visitType(checker.getTypeOfSymbol(p), `${via}.${p.name}`)
    }
    for (const sig of type.getCallSignatures()) visitSignature(sig, via)
    for (const sig of type.getConstructSignatures()) visitSignature(sig, `new ${via}`)
  }

  function visitSymbol(s: ts.Symbol, via: string): void {
    if (!(s.declarations ?? []).some(ours)) return
    noteNamed(s, via)
    if (seenSymbols.has(s)) return
    seenSymbols.add(s)
    if (s.flags & ts.SymbolFlags.TypeAlias) visitType(checker.getDeclaredTypeOfSymbol(s), s.name)
    else if (s.flags & (ts.SymbolFlags.Interface | ts.SymbolFlags.Class)) visitMembers(checker.getDeclaredTypeOfSymbol(s), s.name)
    if (s.flags & ts.SymbolFlags.Value) visitMembers(checker.getTypeOfSymbol(s), s.name)
  }
  for (const s of roots) visitSymbol(s, s.name)
  return missing
}

t.test('public API - every type an export exposes is exported from index.ts', async (t) => {
  const missing = unexportedPublicTypes()
  t.same([...missing].map(([name, via]) => `${name} (via ${via})`), [], 'no public signature names a type the user cannot import')
})
