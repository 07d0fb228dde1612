/// Lua source of `same(a, b)`: deep equality of decoded JSON that tells integers from floats. For the tests that
/// run scripts, in TTNLuaTests and IntegrationTests.
public let luaSame = """
    local function same(a, b)
      if type(a) ~= type(b) then return false end
      if type(a) ~= "table" then return a == b and math.type(a) == math.type(b) end
      for k, v in pairs(a) do if not same(v, b[k]) then return false end end
      for k in pairs(b) do if a[k] == nil then return false end end
      return true
    end

    """
