// pgjdbc conformance probe: one line per feature, "PASS feature" or
// "FAIL feature: reason". Run with the Debian pgjdbc jar:
//   java -cp /usr/share/java/postgresql.jar JdbcProbe.java URL USER PASSWORD TABLE
import java.sql.*;
import java.util.*;

public class JdbcProbe {
    interface Check { String run(Connection c) throws Exception; }

    static String url, user, password, table;

    public static void main(String[] args) throws Exception {
        url = args[0]; user = args[1]; password = args[2]; table = args[3];
        LinkedHashMap<String, Check> checks = new LinkedHashMap<>();
        checks.put("connect", c -> c.getMetaData().getDatabaseProductName() + " " + c.getMetaData().getDatabaseProductVersion());
        checks.put("getCatalogs", c -> expect(names(c.getMetaData().getCatalogs(), "TABLE_CAT"), "sluice"));
        checks.put("getSchemas", c -> expect(names(c.getMetaData().getSchemas(), "TABLE_SCHEM"), "default"));
        checks.put("getTables", c -> expect(names(c.getMetaData().getTables(null, "default", "%", new String[] {"TABLE"}), "TABLE_NAME"), table));
        checks.put("getColumns", c -> {
            List<String> cols = new ArrayList<>();
            try (ResultSet rs = c.getMetaData().getColumns(null, "default", table, "%")) {
                while (rs.next()) cols.add(rs.getString("COLUMN_NAME") + ":" + rs.getString("TYPE_NAME") + ":" + rs.getInt("DATA_TYPE"));
            }
            if (!cols.equals(List.of("id:int8:-5", "store_id:int4:4", "amount:float8:8", "item:text:12")))
                throw new Exception("columns " + cols);
            return cols.toString();
        });
        checks.put("getPrimaryKeys", c -> {
            try (ResultSet rs = c.getMetaData().getPrimaryKeys(null, "default", table)) {
                int n = 0; while (rs.next()) n++;
                return n + " keys (lake tables declare none)";
            }
        });
        checks.put("getTypeInfo", c -> {
            Set<String> types = names(c.getMetaData().getTypeInfo(), "TYPE_NAME");
            for (String t : List.of("int4", "int8", "text", "float8", "bool", "timestamp", "numeric", "date"))
                if (!types.contains(t)) throw new Exception("missing type " + t + " in " + types.size() + " types");
            return types.size() + " types";
        });
        checks.put("PreparedStatement prepareThreshold=1", c -> {
            // prepareThreshold=1 is in the URL: the second execution is a named server statement.
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM " + table + " WHERE store_id = ? AND item = ?")) {
                long[] got = new long[3];
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, 1); ps.setString(2, "item-1");
                    try (ResultSet rs = ps.executeQuery()) { rs.next(); got[i] = rs.getLong(1); }
                }
                if (got[0] != got[2] || got[0] < 1) throw new Exception("counts " + Arrays.toString(got));
                return "count " + got[0];
            }
        });
        checks.put("ResultSetMetaData types", c -> {
            try (Statement st = c.createStatement();
                 ResultSet rs = st.executeQuery("SELECT 1::int4 AS i, 2::int8 AS b, 1.5::float8 AS f, 'x'::text AS t, true AS o, DATE '2024-01-02' AS d, TIMESTAMP '2024-01-02 03:04:05' AS ts, 1.25::numeric(10,2) AS n")) {
                ResultSetMetaData md = rs.getMetaData();
                List<String> got = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) got.add(md.getColumnName(i) + ":" + md.getColumnTypeName(i));
                List<String> want = List.of("i:int4", "b:int8", "f:float8", "t:text", "o:bool", "d:date", "ts:timestamp", "n:numeric");
                if (!got.equals(want)) throw new Exception("types " + got);
                rs.next();
                if (rs.getInt(1) != 1 || rs.getLong(2) != 2 || !rs.getString(4).equals("x") || !rs.getBoolean(5)
                    || !rs.getDate(6).toString().equals("2024-01-02") || rs.getBigDecimal(8).compareTo(new java.math.BigDecimal("1.25")) != 0)
                    throw new Exception("values");
                return got.toString();
            }
        });
        checks.put("setFetchSize in transaction", c -> {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.setFetchSize(1000);
                long n = 0, sum = 0;
                try (ResultSet rs = st.executeQuery("SELECT v FROM generate_series(1, 25000) AS t(v)")) {
                    while (rs.next()) { n++; sum += rs.getLong(1); }
                }
                if (n != 25000 || sum != 25000L * 25001 / 2) throw new Exception("rows " + n + " sum " + sum);
                c.commit();
                return n + " rows in chunks of 1000";
            } finally {
                c.setAutoCommit(true);
            }
        });
        checks.put("CopyManager.copyIn (COPY FROM STDIN)", c -> {
            try (Statement st = c.createStatement()) {
                st.execute("DROP TABLE IF EXISTS jdbc_copy_in");
                st.execute("CREATE TABLE jdbc_copy_in (id BIGINT, name VARCHAR)");
            }
            org.postgresql.copy.CopyManager cm = c.unwrap(org.postgresql.PGConnection.class).getCopyAPI();
            StringBuilder data = new StringBuilder();
            for (int i = 0; i < 10000; i++) data.append(i).append(",\"n ").append(i).append("\"\n");
            long n = cm.copyIn("COPY jdbc_copy_in FROM STDIN WITH (FORMAT csv)", new java.io.StringReader(data.toString()));
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*), max(name) FROM jdbc_copy_in")) {
                rs.next();
                if (n != 10000 || rs.getLong(1) != 10000 || !rs.getString(2).equals("n 9999")) throw new Exception("copied " + n + ", read " + rs.getLong(1));
            }
            return n + " rows";
        });
        checks.put("SQLSTATE of an unknown table", c -> {
            try (Statement st = c.createStatement()) {
                st.executeQuery("SELECT * FROM no_such_table_xyz");
                throw new Exception("no error");
            } catch (SQLException e) {
                if (!"42P01".equals(e.getSQLState())) throw new Exception("sqlstate " + e.getSQLState());
                return "42P01";
            }
        });
        Properties props = new Properties();
        props.setProperty("user", user);
        props.setProperty("password", password);
        props.setProperty("prepareThreshold", "1");
        for (Map.Entry<String, Check> e : checks.entrySet()) {
            try (Connection c = DriverManager.getConnection(url, props)) {
                String detail = e.getValue().run(c);
                System.out.println("PASS " + e.getKey() + ": " + detail);
            } catch (Throwable t) {
                String msg = String.valueOf(t.getMessage()).replace('\n', ' ');
                System.out.println("FAIL " + e.getKey() + ": " + msg);
            }
        }
    }

    static Set<String> names(ResultSet rs, String col) throws SQLException {
        Set<String> out = new TreeSet<>();
        try (rs) { while (rs.next()) out.add(rs.getString(col)); }
        return out;
    }

    static String expect(Set<String> got, String want) throws Exception {
        if (!got.contains(want)) throw new Exception("no " + want + " in " + got);
        return got.toString();
    }
}
