// Streams a query with pgjdbc's setFetchSize inside a transaction (named
// portal, Execute with max_rows) and prints the row count.
//   java -cp /usr/share/java/postgresql.jar FetchSizeStream.java URL USER PASSWORD SQL FETCHSIZE
import java.sql.*;
import java.util.Properties;

public class FetchSizeStream {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.setProperty("user", args[1]);
        p.setProperty("password", args[2]);
        try (Connection c = DriverManager.getConnection(args[0], p)) {
            c.setAutoCommit(false);
            try (Statement st = c.createStatement()) {
                st.setFetchSize(Integer.parseInt(args[4]));
                long n = 0;
                try (ResultSet rs = st.executeQuery(args[3])) {
                    while (rs.next()) n++;
                }
                c.commit();
                System.out.println(n);
            }
        }
    }
}
