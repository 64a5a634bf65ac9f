// Preloaded into every test process (package.json, tap node-arg): jobs run in strict state mode,
// so a test or fixture that changes a state value in place fails where it does. Child processes
// (`weir run` in the fault tests) inherit the variable.
process.env.WEIR_STRICT_STATE = '1'
